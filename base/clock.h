/* clock.h -- the one clock the engine and its front ends time things with. */
#ifndef DP_CLOCK_H
#define DP_CLOCK_H

/* Seconds on CLOCK_MONOTONIC: for intervals only. */
double dp_now_s(void);

/* "m:ss" or "h:mm:ss" for a duration in seconds (0 for a negative or absurd one). */
void dp_format_duration(char *buf, unsigned long size, double seconds);

#endif
