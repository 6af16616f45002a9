// OpenMPI through a shim: its handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are
// macros over global symbols that Swift cannot import, so each gets an accessor.
#ifndef LOOM_CMPI_SHIM_H
#define LOOM_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm loom_mpi_comm_world(void) { return MPI_COMM_WORLD; }

#endif
