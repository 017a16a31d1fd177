/* wf.c: placeholder until the module lands. */
int placeholder_dummy;
