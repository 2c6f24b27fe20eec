#include "core/audio.h"
