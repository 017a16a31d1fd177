/* dockerexec.h: the docker executor (see dockerexec.c). */
#ifndef DOCKEREXEC_H
#define DOCKEREXEC_H

#include "executor.h"

struct docker;

/* A docker executor on client d (borrowed, must outlive it): the job container runs the image
 * given to executor_setup(), with agent_path copied in as its entrypoint. Objects are labelled
 * with runner_name and the job's name. */
int executor_docker_new(uv_loop_t *loop, struct docker *d, const char *agent_path,
                        const char *runner_name, struct executor **out, struct err *e);

#endif
