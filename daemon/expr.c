/* expr.c: placeholder until the module lands. */
