/* runnerctl.c: placeholder main. */
int main(void);
int
main(void)
{
    return 0;
}
