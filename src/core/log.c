#include "core.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static sl_log_level min_level = SL_LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void sl_log_set_level(sl_log_level lvl) { min_level = lvl; }
sl_log_level sl_log_get_level(void) { return min_level; }

void sl_log(sl_log_level lvl, const char *fmt, ...)
{
    if (lvl < min_level)
        return;
    static const char *names[] = {"debug", "info", "warn", "error"};
    char ts[40];
    sl_format_time_iso(sl_wall_ms(), ts, sizeof ts);
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s %-5s %s\n", ts, names[lvl], msg);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}

void sl_log_raw_line(const char *line, size_t n)
{
    pthread_mutex_lock(&log_lock);
    fwrite(line, 1, n, stderr);
    fputc('\n', stderr);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}
