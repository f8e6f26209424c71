/*
 * producers.h -- idempotent-producer state of one partition (Kafka's ProducerStateManager, reduced).
 *
 * Per producer id: its epoch and the last PRODUCER_BATCHES_KEPT batches (first and last sequence, first
 * and last offset). The rules, checked before an append (docs/protocol.md):
 *   1. same epoch and same sequence range as a kept batch -> a duplicate: answer with its offsets;
 *   2. lower epoch -> ERR_FENCED;
 *   3. higher epoch -> the first sequence must be 0;
 *   4. same epoch -> the first sequence must follow the last one (0 after INT32_MAX);
 *   5. unknown producer -> any sequence.
 * The table is rebuilt from batch headers when a partition opens. Owned by the partition; its mutex.
 */
#ifndef FL_STORAGE_PRODUCERS_H
#define FL_STORAGE_PRODUCERS_H

#include <stddef.h>
#include <stdint.h>

#include "storage/recordbatch.h"

#define PRODUCER_BATCHES_KEPT 5

typedef struct {
	int32_t first_seq, last_seq;
	int64_t base, last;
} prod_batch_t;

typedef struct {
	int64_t pid;
	int16_t epoch;
	int nb;
	prod_batch_t b[PRODUCER_BATCHES_KEPT]; /* oldest first */
} prod_state_t;

typedef struct {
	prod_state_t *v;
	size_t n, cap;
} prod_table_t;

/* OK to append; 1 for a duplicate (*dup filled); ERR_SEQUENCE or ERR_FENCED otherwise. */
int prod_check(const prod_table_t *t, const rb_header_t *h, prod_batch_t *dup);
/* Records an appended batch (h->base_offset assigned). */
void prod_record(prod_table_t *t, const rb_header_t *h);
void prod_free(prod_table_t *t);

#endif
