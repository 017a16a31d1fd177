/* yamldoc.c: placeholder until the module lands. */
