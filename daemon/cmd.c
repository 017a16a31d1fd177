/* cmd.c: placeholder until the module lands. */
