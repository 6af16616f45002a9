#ifndef LOOM_CBLAS_SHIM_H
#define LOOM_CBLAS_SHIM_H
#include <cblas.h>
/* OpenBLAS extensions used by Loom (declared in OpenBLAS's cblas.h). */
#endif
