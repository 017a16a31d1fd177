/* test-tar.c: the in-memory ustar writer, checked by the system's tar(1): files, directories,
 * modes, a name split into the ustar prefix, a name that needs a PAX header, an empty file,
 * block alignment, symlinks (a long target in a PAX linkpath), and refusal of absolute and
 * ".." names. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "tar.h"

static void
write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");

    ASSERT(f != NULL);
    ASSERT_EQ(fwrite(p, 1, n, f), n);
    ASSERT_EQ(fclose(f), 0);
}

TEST(archive_extracts_with_system_tar)
{
    struct tar t;
    struct err e = {0};
    char longdir[150], longname[400], prefixed[260], *got;

    memset(longdir, 'p', 120);
    longdir[120] = '\0';
    /* prefix (<=155) + name (<=100): fits ustar without PAX */
    snprintf(prefixed, sizeof prefixed, "%s/%s", longdir, "short.txt");
    /* one 180-byte component: needs PAX */
    memset(longname, 'n', 180);
    snprintf(longname + 180, sizeof longname - 180, ".txt");

    tar_init(&t);
    ASSERT_OK(tar_add_dir(&t, "dir", 0755, &e));
    ASSERT_OK(tar_add_file(&t, "dir/hello.txt", 0644, "hello\n", 6, &e));
    ASSERT_OK(tar_add_file(&t, "dir/run.sh", 0755, "#!/bin/sh\n", 10, &e));
    ASSERT_OK(tar_add_file(&t, "empty", 0600, "", 0, &e));
    ASSERT_OK(tar_add_dir(&t, longdir, 0700, &e));
    ASSERT_OK(tar_add_file(&t, prefixed, 0644, "prefixed\n", 9, &e));
    ASSERT_OK(tar_add_file(&t, longname, 0644, "pax\n", 4, &e));
    tar_finish(&t);
    ASSERT_EQ(t.out.len % 512, 0);
    ASSERT_EQ(tar_add_file(&t, "late", 0644, "", 0, &e), -EINVAL);
    write_file("a.tar", t.out.data, t.out.len);
    tar_free(&t);

    ASSERT_EQ(system("mkdir out && tar -C out -xf a.tar && ls -l out/dir > modes.txt"), 0);
    got = test_read_file("out/dir/hello.txt", NULL);
    ASSERT_STR_EQ(got, "hello\n");
    free(got);
    got = test_read_file("modes.txt", NULL);
    ASSERT_STR_CONTAINS(got, "-rwxr-xr-x");
    ASSERT_STR_CONTAINS(got, "-rw-r--r--");
    free(got);
    got = test_read_file("out/empty", NULL);
    ASSERT_STR_EQ(got, "");
    free(got);
    {
        char p[600];

        snprintf(p, sizeof p, "out/%s", prefixed);
        got = test_read_file(p, NULL);
        ASSERT_STR_EQ(got, "prefixed\n");
        free(got);
        snprintf(p, sizeof p, "out/%s", longname);
        got = test_read_file(p, NULL);
        ASSERT_STR_EQ(got, "pax\n");
        free(got);
    }
}

TEST(symlinks_extract_with_system_tar)
{
    struct tar t;
    struct err e = {0};
    char longtarget[300], longpath[300], buf[400];
    ssize_t n;

    /* a target over the 100-byte linkname field needs a PAX linkpath; so does a long path */
    memset(longtarget, 't', 180);
    snprintf(longtarget + 180, sizeof longtarget - 180, "/target");
    memset(longpath, 'l', 180);
    longpath[180] = '\0';
    tar_init(&t);
    ASSERT_OK(tar_add_file(&t, "real.txt", 0644, "real\n", 5, &e));
    ASSERT_OK(tar_add_symlink(&t, "short", "real.txt", &e));
    ASSERT_OK(tar_add_symlink(&t, "longtarget", longtarget, &e));
    ASSERT_OK(tar_add_symlink(&t, longpath, "real.txt", &e));
    ASSERT_EQ(tar_add_symlink(&t, "empty", "", &e), -EINVAL);
    tar_finish(&t);
    write_file("s.tar", t.out.data, t.out.len);
    tar_free(&t);

    ASSERT_EQ(system("mkdir sout && tar -C sout -xf s.tar"), 0);
    char *got = test_read_file("sout/short", NULL);
    ASSERT_STR_EQ(got, "real\n");
    free(got);
    n = readlink("sout/short", buf, sizeof buf - 1);
    ASSERT_EQ(n, 8);
    n = readlink("sout/longtarget", buf, sizeof buf - 1);
    ASSERT(n > 0);
    buf[n] = '\0';
    ASSERT_STR_EQ(buf, longtarget);
    char where[400];
    snprintf(where, sizeof where, "sout/%s", longpath);
    n = readlink(where, buf, sizeof buf - 1);
    ASSERT(n > 0);
    buf[n] = '\0';
    ASSERT_STR_EQ(buf, "real.txt");
}

TEST(bad_names_refused)
{
    struct tar t;
    struct err e = {0};

    tar_init(&t);
    ASSERT_EQ(tar_add_file(&t, "/etc/passwd", 0644, "", 0, &e), -EINVAL);
    ASSERT_STR_CONTAINS(e.msg, "must be relative");
    ASSERT_EQ(tar_add_file(&t, "a/../../b", 0644, "", 0, &e), -EINVAL);
    ASSERT_STR_CONTAINS(e.msg, "contains \"..\"");
    ASSERT_EQ(tar_add_file(&t, "", 0644, "", 0, &e), -EINVAL);
    tar_finish(&t);
    ASSERT_EQ(t.out.len, 1024);
    tar_free(&t);
}
