// Debian installs OpenBLAS's CBLAS header as <cblas.h> through the alternatives system.
#include <cblas.h>
