#include "core/model_tensors.h"
