#include "core/safetensors.h"
