/* test-tar.c: the in-memory ustar writer, checked by the system's tar(1): files, directories,
 * modes, a name split into the ustar prefix, a name that needs a PAX header, an empty file,
 * block alignment, symlinks (a long target in a PAX linkpath), and refusal of absolute and
 * ".." names. The reader: our own archives read back (prefix split, PAX path and linkpath),
 * GNU and PAX archives from tar(1) with long names, "./" prefixes and hard links, a last entry
 * without its padding, and truncated or corrupted archives (a bad PAX record) refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "runner/buf.h"
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

/* ---- reading ---- */

TEST(reader_reads_back_our_archives)
{
    struct tar t;
    struct tar_reader r;
    struct tar_entry ent;
    struct err e = {0};
    char longdir[150], prefixed[260], longname[300], longtarget[300];

    memset(longdir, 'p', 120);
    longdir[120] = '\0';
    snprintf(prefixed, sizeof prefixed, "%s/short.txt", longdir);
    memset(longname, 'n', 180);
    snprintf(longname + 180, sizeof longname - 180, ".txt");
    memset(longtarget, 't', 180);
    snprintf(longtarget + 180, sizeof longtarget - 180, "/target");
    tar_init(&t);
    ASSERT_OK(tar_add_dir(&t, "dir", 0750, &e));
    ASSERT_OK(tar_add_file(&t, "dir/run.sh", 0755, "#!/bin/sh\n", 10, &e));
    ASSERT_OK(tar_add_file(&t, prefixed, 0644, "prefixed\n", 9, &e));
    ASSERT_OK(tar_add_file(&t, longname, 0600, "pax\n", 4, &e));
    ASSERT_OK(tar_add_symlink(&t, "link", longtarget, &e));
    ASSERT_OK(tar_add_file(&t, "./dotted", 0644, "", 0, &e));
    tar_finish(&t);

    tar_reader_init(&r, t.out.data, t.out.len);
    ASSERT_EQ(tar_next(&r, &ent, &e), 1);
    ASSERT_STR_EQ(ent.path, "dir");
    ASSERT_EQ(ent.type, '5');
    ASSERT_EQ(ent.mode, 0750);
    ASSERT_EQ(tar_next(&r, &ent, &e), 1);
    ASSERT_STR_EQ(ent.path, "dir/run.sh");
    ASSERT_EQ(ent.type, '0');
    ASSERT_EQ(ent.mode, 0755);
    ASSERT_EQ(ent.len, 10);
    ASSERT(memcmp(ent.data, "#!/bin/sh\n", 10) == 0);
    ASSERT_EQ(tar_next(&r, &ent, &e), 1);
    ASSERT_STR_EQ(ent.path, prefixed);
    ASSERT_EQ(ent.len, 9);
    ASSERT_EQ(tar_next(&r, &ent, &e), 1);
    ASSERT_STR_EQ(ent.path, longname);
    ASSERT_EQ(ent.len, 4);
    ASSERT(memcmp(ent.data, "pax\n", 4) == 0);
    ASSERT_EQ(tar_next(&r, &ent, &e), 1);
    ASSERT_STR_EQ(ent.path, "link");
    ASSERT_EQ(ent.type, '2');
    ASSERT_STR_EQ(ent.link, longtarget);
    ASSERT_EQ(tar_next(&r, &ent, &e), 1);
    ASSERT_STR_EQ(ent.path, "dotted");
    ASSERT_EQ(ent.len, 0);
    ASSERT_EQ(tar_next(&r, &ent, &e), 0);
    ASSERT_EQ(tar_next(&r, &ent, &e), 0);
    tar_reader_free(&r);

    /* without the end blocks, the end of the data is the end */
    tar_reader_init(&r, t.out.data, t.out.len - 1024);
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(tar_next(&r, &ent, &e), 1);
    ASSERT_EQ(tar_next(&r, &ent, &e), 0);
    tar_reader_free(&r);
    tar_free(&t);
}

/* Reads every entry of the archive file at path into "type path[ -> link] len" lines. */
static char *
list_archive(const char *path)
{
    size_t n = 0;
    char *data = test_read_file(path, &n);
    struct tar_reader r;
    struct tar_entry ent;
    struct err e = {0};
    struct buf out = BUF_INIT;
    int rc;

    ASSERT(data != NULL);
    tar_reader_init(&r, data, n);
    while ((rc = tar_next(&r, &ent, &e)) > 0) {
        buf_printf(&out, "%c %s", ent.type, ent.path);
        if (ent.link[0])
            buf_printf(&out, " -> %s", ent.link);
        buf_printf(&out, " %zu\n", ent.len);
    }
    if (rc < 0)
        test_fail(__FILE__, __LINE__, "%s: %s", path, e.msg);
    tar_reader_free(&r);
    free(data);
    return buf_steal(&out);
}

TEST(reader_reads_system_tar_formats)
{
    char want[1200], longname[200], *got;

    memset(longname, 'g', 150);
    longname[150] = '\0';
    snprintf(want, sizeof want,
             "mkdir -p src/act && printf 'FROM x\\n' > src/act/Dockerfile && "
             "printf 'hello\\n' > src/act/%s && ln src/act/Dockerfile src/act/hard && "
             "ln -s Dockerfile src/act/soft && "
             "tar -C src --format=gnu --sort=name -cf gnu.tar ./act && "
             "tar -C src --format=pax --sort=name -cf pax.tar act",
             longname);
    ASSERT_EQ(system(want), 0);
    snprintf(want, sizeof want,
             "5 act 0\n0 act/Dockerfile 7\n0 act/%s 6\n1 act/hard -> ./act/Dockerfile 0\n"
             "2 act/soft -> Dockerfile 0\n",
             longname);
    got = list_archive("gnu.tar");
    ASSERT_STR_EQ(got, want);
    free(got);
    snprintf(want, sizeof want,
             "5 act 0\n0 act/Dockerfile 7\n0 act/%s 6\n1 act/hard -> act/Dockerfile 0\n"
             "2 act/soft -> Dockerfile 0\n",
             longname);
    got = list_archive("pax.tar");
    ASSERT_STR_EQ(got, want);
    free(got);
}

TEST(reader_refuses_broken_archives)
{
    struct tar t;
    struct tar_reader r;
    struct tar_entry ent;
    struct err e = {0};
    char data[2000];

    memset(data, 'x', sizeof data);
    tar_init(&t);
    ASSERT_OK(tar_add_file(&t, "a", 0644, data, sizeof data, &e));
    tar_finish(&t);

    /* the file's data cut short */
    tar_reader_init(&r, t.out.data, 1024);
    ASSERT_EQ(tar_next(&r, &ent, &e), ERR_PROTO);
    ASSERT_STR_EQ(e.msg, "tar: entry at byte 0 runs past the end");
    tar_reader_free(&r);
    /* half a header */
    tar_reader_init(&r, t.out.data, 100);
    ASSERT_EQ(tar_next(&r, &ent, &e), ERR_PROTO);
    ASSERT_STR_EQ(e.msg, "tar: truncated header at byte 0");
    tar_reader_free(&r);
    /* a changed name: the checksum no longer matches */
    t.out.data[0] = 'b';
    tar_reader_init(&r, t.out.data, t.out.len);
    ASSERT_EQ(tar_next(&r, &ent, &e), ERR_PROTO);
    ASSERT_STR_EQ(e.msg, "tar: bad header checksum at byte 0");
    tar_reader_free(&r);
    tar_free(&t);
}

TEST(reader_edge_cases)
{
    struct tar t;
    struct tar_reader r;
    struct tar_entry ent;
    struct err e = {0};
    char longname[200];

    tar_init(&t);
    ASSERT_OK(tar_add_file(&t, "a", 0644, "0123456789", 10, &e));
    tar_finish(&t);
    /* the last entry's data without its padding (nor the end blocks) */
    tar_reader_init(&r, t.out.data, 512 + 10);
    ASSERT_EQ(tar_next(&r, &ent, &e), 1);
    ASSERT_STR_EQ(ent.path, "a");
    ASSERT_EQ(ent.len, 10);
    ASSERT(memcmp(ent.data, "0123456789", 10) == 0);
    ASSERT_EQ(tar_next(&r, &ent, &e), 0);
    tar_reader_free(&r);
    tar_free(&t);

    /* a PAX record whose length runs past its header's data */
    memset(longname, 'n', 180);
    longname[180] = '\0';
    tar_init(&t);
    ASSERT_OK(tar_add_file(&t, longname, 0644, "x", 1, &e));
    tar_finish(&t);
    ASSERT(memcmp(t.out.data + 512 + 3, " path=", 6) == 0); /* "190 path=nnn...\n" */
    memcpy(t.out.data + 512, "999", 3);
    tar_reader_init(&r, t.out.data, t.out.len);
    ASSERT_EQ(tar_next(&r, &ent, &e), ERR_PROTO);
    ASSERT_STR_EQ(e.msg, "tar: malformed PAX header");
    tar_reader_free(&r);
    tar_free(&t);
}
