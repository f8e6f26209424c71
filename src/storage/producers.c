/* producers.c -- idempotent-producer sequence and epoch rules. See producers.h. */
#include "storage/producers.h"

#include <stdlib.h>
#include <string.h>

#include "core/compat.h"
#include "core/fl_assert.h"

static prod_state_t *find(const prod_table_t *t, int64_t pid)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].pid == pid)
			return &t->v[i];
	return NULL;
}

static int32_t last_seq(const rb_header_t *h)
{
	int64_t s = (int64_t)h->base_sequence + h->last_offset_delta;
	return (int32_t)(s > INT32_MAX ? s - INT32_MAX - 1 : s);
}

int prod_check(const prod_table_t *t, const rb_header_t *h, prod_batch_t *dup)
{
	if (h->producer_id < 0)
		return OK;
	const prod_state_t *s = find(t, h->producer_id);
	if (s == NULL)
		return OK;
	int32_t first = h->base_sequence, last = last_seq(h);
	if (h->producer_epoch == s->epoch)
		for (int i = 0; i < s->nb; i++)
			if (s->b[i].first_seq == first && s->b[i].last_seq == last) {
				*dup = s->b[i];
				return 1;
			}
	if (h->producer_epoch < s->epoch)
		return ERR_FENCED;
	if (h->producer_epoch > s->epoch)
		return first == 0 ? OK : ERR_SEQUENCE;
	if (s->nb == 0)
		return OK;
	int32_t prev = s->b[s->nb - 1].last_seq;
	int32_t want = prev == INT32_MAX ? 0 : prev + 1;
	return first == want ? OK : ERR_SEQUENCE;
}

void prod_record(prod_table_t *t, const rb_header_t *h)
{
	if (h->producer_id < 0)
		return;
	prod_state_t *s = find(t, h->producer_id);
	if (s == NULL) {
		if (t->n == t->cap) {
			t->cap = t->cap ? t->cap * 2 : 8;
			t->v = realloc(t->v, t->cap * sizeof *t->v);
			ASSERT(t->v != NULL);
		}
		s = &t->v[t->n++];
		memset(s, 0, sizeof *s);
		s->pid = h->producer_id;
		s->epoch = h->producer_epoch;
	}
	if (h->producer_epoch != s->epoch) {
		s->epoch = h->producer_epoch;
		s->nb = 0;
	}
	if (s->nb == PRODUCER_BATCHES_KEPT) {
		memmove(s->b, s->b + 1, (PRODUCER_BATCHES_KEPT - 1) * sizeof s->b[0]);
		s->nb--;
	}
	prod_batch_t *b = &s->b[s->nb++];
	b->first_seq = h->base_sequence;
	b->last_seq = last_seq(h);
	b->base = h->base_offset;
	b->last = rb_last_offset(h);
}

void prod_free(prod_table_t *t)
{
	free(t->v);
	memset(t, 0, sizeof *t);
}
