/*
 * list.h — one intrusive doubly linked list for every object list of the
 * gateway and the shim (connections of a server, tunnels of a connection or
 * of a client).
 *
 * Circular with a sentinel: a list_t is both the head and the link embedded
 * in each member, so insertion and removal never test for an end, and a
 * member recovers its owner with container_of. Removal leaves the link
 * pointing at itself, so removing twice is harmless. No allocation.
 *
 *     typedef struct conn { list_t _link; ... } conn_t;
 *     list_t conns;  list_init(&conns);
 *     list_append(&conns, &c->_link);
 *     list_for_each_safe(pos, tmp, &conns) conn_free(LIST_ENTRY(pos, conn_t, _link));
 */
#ifndef SLUICE_LIST_H
#define SLUICE_LIST_H

#include "compat.h"

typedef struct list {
    struct list *prev, *next;
} list_t;

static inline void list_init(list_t *head)
{
    head->prev = head->next = head;
}

static inline int list_empty(const list_t *head)
{
    return head->next == head;
}

static inline void list_insert_between(list_t *node, list_t *prev, list_t *next)
{
    node->prev = prev;
    node->next = next;
    prev->next = node;
    next->prev = node;
}

/* At the front. */
static inline void list_push(list_t *head, list_t *node)
{
    list_insert_between(node, head, head->next);
}

/* At the back. */
static inline void list_append(list_t *head, list_t *node)
{
    list_insert_between(node, head->prev, head);
}

/* Unlinks node (a member, not a head); idempotent once it is self-linked. */
static inline void list_remove(list_t *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    list_init(node);
}

#define LIST_ENTRY(node, type, member) container_of(node, type, member)

/* The first member, or NULL when the list is empty. */
#define LIST_FIRST(head, type, member)                                                        \
    (list_empty(head) ? (type *)NULL : LIST_ENTRY((head)->next, type, member))

/* Iterates over the links; pos may be removed (and freed) inside the loop. */
#define list_for_each_safe(pos, tmp, head)                                                    \
    for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);                          \
         (pos) = (tmp), (tmp) = (pos)->next)

#endif
