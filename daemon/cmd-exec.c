/* cmd-exec.c: placeholder until the module lands. */
