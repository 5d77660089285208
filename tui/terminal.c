/* terminal.c -- whether the dashboard can draw on the terminal TERM names. Apart from
 * dashboard.c because term.h defines macros (lines, columns, key names) that clash with it. */
#include "tui/dashboard.h"

#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <term.h>
#include <unistd.h>

void dp_say_terminal_unusable(void)
{
    const char *term = getenv("TERM");
    fprintf(stderr, "dpmptop: cannot use this terminal (TERM=%s); run with --headless\n",
            term ? term : "");
}

bool dp_dashboard_terminal_usable(void)
{
    int found = 0;
    if (setupterm(NULL, STDOUT_FILENO, &found) == OK && found == 1) { /* 1: known, not hardcopy */
        del_curterm(cur_term);
        return true;
    }
    dp_say_terminal_unusable();
    return false;
}
