/* sysinfo.h -- the host's figures a view shows once: its memory, this process's resident size,
 * and CPU time of threads. Linux (/proc, per-thread CPU clocks). */
#ifndef DP_SYSINFO_H
#define DP_SYSINFO_H

#include <stddef.h>

/* The machine's physical memory in bytes (0 when unknown). */
size_t dp_host_memory_total(void);
/* This process's resident set size in bytes, from /proc/self/statm (0 when unknown). */
size_t dp_process_rss(void);

#endif
