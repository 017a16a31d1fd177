/* ctx.c: placeholder until the module lands. */
