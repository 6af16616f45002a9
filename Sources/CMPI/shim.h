// OpenMPI through a shim: its handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are
// macros over global symbols that Swift cannot import, so each gets an accessor.
// Only accessors live here; every call into MPI is made from Swift.
#ifndef LOOM_CMPI_SHIM_H
#define LOOM_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm loom_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm loom_mpi_comm_null(void) { return MPI_COMM_NULL; }

static inline MPI_Datatype loom_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype loom_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype loom_mpi_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype loom_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype loom_mpi_byte(void) { return MPI_BYTE; }

static inline MPI_Op loom_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op loom_mpi_prod(void) { return MPI_PROD; }
static inline MPI_Op loom_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op loom_mpi_min(void) { return MPI_MIN; }

static inline void *loom_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *loom_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Request loom_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Errhandler loom_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }

static inline int loom_mpi_success(void) { return MPI_SUCCESS; }
static inline int loom_mpi_thread_single(void) { return MPI_THREAD_SINGLE; }
static inline int loom_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int loom_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int loom_mpi_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
static inline int loom_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }

#endif
