#include "core/mel.h"
