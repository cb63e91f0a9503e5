// Scalar math overloaded for float and double, callable from host and device code alike.
// (Unqualified exp(float) would silently promote to double on the host.)
#pragma once
#include <math.h>
#include "ranvier/common.h"

namespace ranvier {

RANVIER_HD float math_exp(float x) { return expf(x); }
RANVIER_HD double math_exp(double x) { return exp(x); }
RANVIER_HD float math_log(float x) { return logf(x); }
RANVIER_HD double math_log(double x) { return log(x); }
RANVIER_HD float math_log1p(float x) { return log1pf(x); }
RANVIER_HD double math_log1p(double x) { return log1p(x); }
RANVIER_HD float math_tanh(float x) { return tanhf(x); }
RANVIER_HD double math_tanh(double x) { return tanh(x); }
RANVIER_HD float math_erf(float x) { return erff(x); }
RANVIER_HD double math_erf(double x) { return erf(x); }
RANVIER_HD float math_sqrt(float x) { return sqrtf(x); }
RANVIER_HD double math_sqrt(double x) { return sqrt(x); }
RANVIER_HD float math_abs(float x) { return fabsf(x); }
RANVIER_HD double math_abs(double x) { return fabs(x); }

}  // namespace ranvier
