/* dockerexec-int.h: what the dockerexec*.c files share (the executor's state and its helpers);
 * not for other callers. dockerexec.c describes the executor. */
#ifndef DOCKEREXEC_INT_H
#define DOCKEREXEC_INT_H

#include "dockerexec.h"

#include "docker.h"
#include "tar.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#define AGENT_DIR "/.runner"
#define WORKSPACE "/workspace"
#define FILE_DIR "/var/run/act/workflow"
/* The agent's journal: on the job's /var/run/act volume, not in the container's root
 * filesystem, which may be slow to write (fuse-overlayfs: a third of the fast channel's
 * throughput, bench/README.md). The agent unlinks it once open, before any step runs, so no
 * step or step container sharing the volume can reach it. */
#define JOURNAL "/var/run/act/.runner-journal"
#define PROBE_STEP 0xfffff002u
#define MAX_UPLOAD (512ull << 20) /* workspace copies past this should use --bind */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* From the container's start until the agent's HELLO_REPLY and the setup probe's exit: an
 * agent that never starts (an image or options that keep it from running) fails the job. */
#define HELLO_TIMEOUT_MS 30000
/* The fast channel (dockerexec-fast.c): the directory of the host's socket as the job
 * container sees it (a read-only bind), and the socket's name in it. */
#define DOCKEREXEC_FAST_DIR "/run/runnerd-agent"
#define DOCKEREXEC_FAST_SOCK "agent.sock"
/* The network of every job without one of its own: a bridge with inter-container traffic off
 * ("com.docker.network.bridge.enable_icc": "false"), so jobs on it cannot reach each other, as
 * on networks of their own; created once (by the first job that finds it missing) and kept. */
#define DOCKEREXEC_SHARED_NET "runnerd-isolated"
/* The network a job's containers join: its own, else the shared one. */
#define DOCKEREXEC_NET(dx) ((dx)->net_name ? (dx)->net_name : DOCKEREXEC_SHARED_NET)

struct services;
struct dind;
struct docker_attach;
struct dockerexec_fast;

/* Where the agent's frames come from: the attach stream, or the fast channel (waiting for the
 * agent to connect, or connected). */
enum dockerexec_chan {
    DOCKEREXEC_CHAN_ATTACH,
    DOCKEREXEC_CHAN_WAITING,
    DOCKEREXEC_CHAN_FAST,
};

struct docker_exec {
    struct executor x;        /* first */
    struct docker *d;
    char *agent_path, *runner_name;
    /* net_name: the job network, only for a job with services or a dind sidecar (NULL: the
     * engine's default bridge). */
    char *name, *image, *image_id, *source, *net_name;
    char *net_id, *ctr_id;
    /* Per-job volumes: [0] the workspace (unless bound), [1] /var/run/act (scripts and file
     * commands), both shared with step containers. */
    char *vols[2];
    bool vol_created[2];
    int setup_calls;          /* the setup's first calls not yet landed (setup_landed()) */
    bool failed;              /* the setup failed: calls landing later go no further */
    char *options;            /* container.options */
    json_t *volumes;          /* container.volumes (evaluated), or NULL */
    bool job_vols;            /* named volumes of the workflow exist: teardown sweeps them */
    json_t *services;         /* evaluated services map, or NULL */
    struct services *svc;     /* running services */
    bool reattaching;         /* a new attach stream replaces a lost one */
    bool adopted;             /* a running job container found again (executor_docker_adopt) */
    uint64_t resume_from;
    bool svc_stopping;
    bool svc_waiting;         /* the services still start while the job container comes up */
    bool agent_waiting;       /* the agent is ready and waits for them */
    json_t *env;
    json_t *profile;          /* the label's settings for this job, or NULL */
    struct dind *dind;        /* the docker: dind sidecar */
    bool dind_waiting;        /* ... still starting (a call in flight) */
    bool used_dind;           /* teardown sweeps the job's objects (the sidecar first) */
    bool bind, ready, closing, teardown;
    bool starting;            /* the start call is in flight: its answer says more than the
                                 stream's end (a refused start ends the stream first) */
    bool att_ended;           /* ... and the stream ended meanwhile */
    struct err att_err;
    struct docker_attach *att;
    uv_timer_t *hello_timer;  /* the agent's deadline to answer (HELLO_TIMEOUT_MS), or NULL */
    struct dockerexec_fast *fast; /* the fast channel's socket, or NULL */
    enum dockerexec_chan chan;
    bool fast_stray;          /* bytes on the attach stream's stdout were dropped (warned) */
    bool att_dead;            /* the attach stream ended (the fast channel may go on) */
    bool lost_told;           /* the job run was told that the agent is gone */
    /* The upload, built off the loop. */
    uv_work_t work;
    struct tar tar;
    int tar_rc;
    struct err tar_err;
    bool tar_built;           /* ... and not yet copied in */
    bool uploaded, att_up;    /* the copy is in, the attach stream is up: the start may come */
    /* runner-agent's host path (absolute) when the job container binds it read-only at
     * AGENT_DIR/agent instead of receiving a copy in the upload (dockerexec_agent_bind()). */
    char *agent_bind;
    size_t ws_entries;        /* workspace entries in the upload (the worker counts them) */
    size_t tar_agent_end;     /* the upload's agent entries end here: a bound agent skips them */
    /* The upload was left out before the start (nothing in it but directories, the agent
     * bound): the setup probe makes them; if it cannot, the upload is copied in after all
     * (late_upload) before the job is ready. */
    bool dirs_by_probe, late_upload;
    bool as_root;
    bool svc_started;         /* the services' starts are answered (the job's may come) */             /* the image's user is root and no option names another */
    int pending;              /* docker calls in flight during close */
};

/* dockerexec.c: the job's lifecycle and the agent connection. */

/* Fails the setup (reports it not ready) with e. */
void dockerexec_fail(struct docker_exec *dx, const struct err *e);
/* A line of the job's log (the executor's on_log). */
void dockerexec_say(struct docker_exec *dx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Counts a started docker call (rc from the call); returns rc. */
int dockerexec_flying(struct docker_exec *dx, int rc);
/* The common start of a docker callback: false when it must stop here (closing, which then
 * goes on; or the call failed, which fails the setup). */
bool dockerexec_proceed(struct docker_exec *dx, const struct docker_res *res);
/* A new labels object for what this job creates. */
json_t *dockerexec_job_labels(const struct docker_exec *dx);
/* Ends the wait for the agent's hello (answered, failed or closing). */
void dockerexec_hello_stop(struct docker_exec *dx);
/* The job container is set up: reports the executor ready (or waits for the services). */
void dockerexec_ready(struct docker_exec *dx);
/* A new agent connection over a new attach stream to the job container. */
int dockerexec_attach(struct docker_exec *dx, struct err *e);

/* dockerexec-create.c: the executor's setup (image, network, volumes, services, dind, the
 * job container). */
int dockerexec_setup(struct executor *x, const struct executor_job *job, struct err *e);

/* The job container is created (dockerexec-create.c): attach to it and copy the upload in, at
 * once; dockerexec_start() once both are done. */
void dockerexec_created(struct docker_exec *dx);
/* The services are ready (after the job container was created): the job is ready once the
 * agent is too. */
void dockerexec_services_ready(struct docker_exec *dx);
/* Starts the job container once the upload is in and the attach stream is up (called by
 * both; the second one starts it). */
void dockerexec_start(struct docker_exec *dx);

/* dockerexec-upload.c: the agent and the workspace copied into the created container. Building
 * starts with the setup (0, or <0 with e); the copy goes in when the tar is built and the
 * container created (either calls dockerexec_upload_put(); the second one copies). */
int dockerexec_upload_build(struct docker_exec *dx, struct err *e);
void dockerexec_upload_put(struct docker_exec *dx);
/* The setup probe could not make the directories: copies the kept upload into the running
 * container, then reports the executor ready (dockerexec_ready()). */
void dockerexec_upload_late(struct docker_exec *dx);

/* dockerexec-fast.c: the fast channel. Before the job container is created: listens on a new
 * socket in a new private directory when the engine is local and nothing forces the attach
 * stream (true), else says why not (false). */
bool dockerexec_fast_listen(struct docker_exec *dx);
/* At the setup's start: sets dx->agent_bind when the job container can bind runner-agent from
 * this host (a local engine, as for the fast channel; RUNNERD_AGENT_CHANNEL=attach copies it). */
void dockerexec_agent_bind(struct docker_exec *dx);
/* The job container's bind of the socket's directory (a new string; free it), or NULL. */
char *dockerexec_fast_bind(const struct docker_exec *dx);
/* n bytes of the agent's stdout came on the attach stream: feed them (true) or not. The first
 * ones while the agent was expected on the channel mean it could not connect. */
bool dockerexec_fast_attach_output(struct docker_exec *dx, size_t n);
/* Closes the channel and removes its socket and directory (at close, or reattaching over
 * attach); the agent then sends on stdout again. */
void dockerexec_fast_close(struct docker_exec *dx);

/* dockerexec-close.c: the executor's close: the container, volumes, network and the job's other
 * objects removed, then the executor freed (on_closed). */
void dockerexec_close(struct executor *x);

#endif
