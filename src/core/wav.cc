#include "core/wav.h"
