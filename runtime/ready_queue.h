/* Loop lag: when each callback in a loop's ready queue became ready.
 *
 * asyncio keeps the callbacks ready to run in loop._ready, a deque: call_soon
 * (and call_soon_threadsafe) append a Handle, a due timer is appended at the
 * start of an iteration, and the iteration pops them from the left, in that
 * order, and runs each (or skips it, if cancelled). With counters on, each
 * new loop's deque is swapped for a ReadyQueue: a deque
 * whose append, written in C, also notes the time. The interpreter calls it
 * as directly as deque.append (a method descriptor of a C type), so this
 * costs a clock read and a few stores per callback: no wrapper around Python
 * code, no table keyed by address.
 *
 * The times live beside the deque, in a ring of (item, time) per queue that
 * holds the queue with a strong reference. Handle._run then takes its time
 * back: the ring's newest entries belong to the items still queued, the one
 * before them to the item popped last. An item the ring cannot account for
 * (the deque changed in another way: clear(), appendleft(), ...) has no time:
 * its lag is unknown, never guessed.
 */
#ifndef ASTRACE_READY_QUEUE_H
#define ASTRACE_READY_QUEUE_H

#include <stdint.h>

#include "pyhead.h"

/* Makes the ReadyQueue type, a subclass of `deque` (collections.deque);
 * None turns lag off. */
int ready_queue_init(PyObject *deque);
/* Swaps a new loop's plain deque for a ReadyQueue. Called at the end of
 * BaseEventLoop.__init__, before any other thread can hold the loop (a
 * thread that had read loop._ready would append to the old deque). */
void ready_queue_adopt(PyObject *loop);
/* loop._ready, noted as this thread's running queue: a new reference, or
 * NULL with no exception set. */
PyObject *ready_queue_of(PyObject *loop);
/* When `handle`, just popped from this thread's running queue, became
 * ready; 0 when unknown. */
uint64_t ready_queue_take(PyObject *handle);

#endif
