/*
 * io_sim.h -- a simulated disk for crash, fault and model tests (after SQLite's test6.c).
 *
 * Files live in memory. Each file keeps what a reader sees now and what a crash would keep: its state at
 * the last fdatasync plus the writes and truncations made since, in order. A simulated crash rebuilds every
 * file from its durable state and replays each unsynced operation as kept, dropped or torn (a prefix kept,
 * the rest of the range filled with garbage), chosen by a seeded RNG. Name operations (create, rename,
 * unlink, mkdir) are durable at once: the engine fsyncs directories, but this sim does not model their loss.
 *
 * Faults: crash at the Nth fdatasync; fail the Nth fdatasync with EIO; a byte budget (ENOSPC past it).
 * Ownership: io_sim_new() returns an object the test frees with io_sim_free(); use io_sim_io() as the io_t.
 */
#ifndef FL_STORAGE_IO_SIM_H
#define FL_STORAGE_IO_SIM_H

#include <stdint.h>

#include "storage/io.h"

typedef struct io_sim io_sim_t;

io_sim_t *io_sim_new(void);
void io_sim_free(io_sim_t *sim);
io_t *io_sim_io(io_sim_t *sim);

/* At the nth fdatasync from now (1 = the next one), crash instead: that call and every later call on any
 * descriptor fail with -EIO until io_sim_recover(). 0 disarms. */
void io_sim_crash_at_sync(io_sim_t *sim, int n);
/* True once the armed crash has happened. */
int io_sim_crashed(const io_sim_t *sim);
/* Crash now (as if the power went out), if not crashed yet. */
void io_sim_crash_now(io_sim_t *sim);
/* Applies the crash to every file (keep/drop/tear each unsynced op, chosen by seed), closes every
 * descriptor and makes the disk usable again. Also valid with no crash: then it acts as a power loss. */
void io_sim_recover(io_sim_t *sim, uint64_t seed);
/* The nth fdatasync from now fails with -EIO (and keeps nothing new). 0 disarms. */
void io_sim_fail_sync_at(io_sim_t *sim, int n);
/* Writes that would grow the total file bytes past limit fail with -ENOSPC. 0 = unlimited. */
void io_sim_set_space_limit(io_sim_t *sim, int64_t limit);
/* Number of fdatasync calls that succeeded so far. */
int io_sim_sync_count(const io_sim_t *sim);

/* Direct access for corruption tests: the current bytes of a file (NULL if absent), and a byte flip that
 * also lands in its durable image. */
const uint8_t *io_sim_file_data(io_sim_t *sim, const char *path, int64_t *size);
err_t io_sim_flip_bit(io_sim_t *sim, const char *path, int64_t off, int bit);
err_t io_sim_truncate_file(io_sim_t *sim, const char *path, int64_t size);

#endif
