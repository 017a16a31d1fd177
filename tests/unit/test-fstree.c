/* test-fstree.c: whole trees on the host: copying (modes, symlinks as symlinks, files a
 * .gitignore would hide), packing into a tar that the system's tar(1) extracts the same way, the
 * size cap, and removal (including a missing path and a symlink to outside the tree). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "fstree.h"
#include "harness.h"

/* src/: a.txt (0644), bin/run.sh (0755), link -> a.txt, node_modules/m.js, .gitignore */
static void
make_tree(void)
{
    ASSERT_EQ(system("mkdir -p src/bin src/node_modules && printf a > src/a.txt && "
                     "printf '#!/bin/sh' > src/bin/run.sh && chmod 755 src/bin/run.sh && "
                     "chmod 644 src/a.txt && ln -s a.txt src/link && printf m > "
                     "src/node_modules/m.js && printf 'node_modules\\n' > src/.gitignore"),
              0);
}

static void
check_copy(const char *root)
{
    char p[256], buf[64], *got;
    struct stat st;
    ssize_t n;

    snprintf(p, sizeof p, "%s/a.txt", root);
    got = test_read_file(p, NULL);
    ASSERT_STR_EQ(got, "a");
    free(got);
    snprintf(p, sizeof p, "%s/bin/run.sh", root);
    ASSERT_EQ(stat(p, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0755);
    snprintf(p, sizeof p, "%s/link", root);
    ASSERT_EQ(lstat(p, &st), 0);
    ASSERT(S_ISLNK(st.st_mode));
    n = readlink(p, buf, sizeof buf - 1);
    ASSERT_EQ(n, 5);
    snprintf(p, sizeof p, "%s/node_modules/m.js", root);
    got = test_read_file(p, NULL); /* no ignore rules here, unlike the workspace walk */
    ASSERT_STR_EQ(got, "m");
    free(got);
}

TEST(copy_keeps_modes_symlinks_and_ignored_files)
{
    struct err e = {0};

    make_tree();
    ASSERT_OK(fstree_copy("src", "dst", &e));
    check_copy("dst");
    /* copying again over the same destination works (a symlink is replaced) */
    ASSERT_OK(fstree_copy("src", "dst", &e));
    check_copy("dst");
}

TEST(tar_extracts_the_same_tree)
{
    struct tar t;
    struct err e = {0};
    FILE *f;

    make_tree();
    tar_init(&t);
    ASSERT_OK(fstree_tar("src", ".", &t, 1 << 20, &e));
    tar_finish(&t);
    f = fopen("t.tar", "wb");
    ASSERT(f != NULL);
    ASSERT_EQ(fwrite(t.out.data, 1, t.out.len, f), t.out.len);
    ASSERT_EQ(fclose(f), 0);
    tar_free(&t);
    ASSERT_EQ(system("mkdir out && tar -C out -xf t.tar"), 0);
    check_copy("out");
}

/* Each entry carries its file's mtime (a checkout's is its checkout time), never 1970:
 * zip and wheel builds refuse files older than 1980. */
TEST(tar_keeps_each_files_mtime)
{
    struct tar t;
    struct err e = {0};
    struct stat st;
    FILE *f;

    make_tree();
    ASSERT_EQ(system("touch -d '2021-03-04 05:06:07 UTC' src/a.txt"), 0);
    tar_init(&t);
    ASSERT_OK(fstree_tar("src", ".", &t, 1 << 20, &e));
    tar_finish(&t);
    f = fopen("t.tar", "wb");
    ASSERT(f != NULL);
    ASSERT_EQ(fwrite(t.out.data, 1, t.out.len, f), t.out.len);
    ASSERT_EQ(fclose(f), 0);
    tar_free(&t);
    ASSERT_EQ(system("mkdir out && tar -C out -xf t.tar"), 0);
    ASSERT_EQ(stat("out/a.txt", &st), 0);
    ASSERT_EQ((long long)st.st_mtime, 1614834367LL);
    ASSERT_EQ(stat("out/bin/run.sh", &st), 0);
    ASSERT(st.st_mtime > 1600000000);
}

TEST(tar_cap_is_an_error)
{
    struct tar t;
    struct err e = {0};

    ASSERT_EQ(system("mkdir src && head -c 100000 /dev/zero > src/big"), 0);
    tar_init(&t);
    ASSERT_EQ(fstree_tar("src", ".", &t, 50000, &e), -EFBIG);
    ASSERT_STR_CONTAINS(e.msg, "to upload");
    tar_free(&t);
}

TEST(remove_tree_missing_path_and_outside_link)
{
    struct err e = {0};
    struct stat st;

    make_tree();
    ASSERT_EQ(system("mkdir keep && printf k > keep/k && ln -s ../keep src/out"), 0);
    ASSERT_OK(fstree_remove("src", &e));
    ASSERT_EQ(lstat("src", &st), -1);
    ASSERT_EQ(stat("keep/k", &st), 0); /* the link was removed, not what it points to */
    ASSERT_OK(fstree_remove("src", &e)); /* already gone: not an error */
    ASSERT_EQ(system("printf x > file"), 0);
    ASSERT_OK(fstree_remove("file", &e));
    ASSERT_EQ(lstat("file", &st), -1);
}

/* A fetched action's tree (workflow authors write it): links that stay inside are followed,
 * links that leave it (absolute, "..", a linked directory) are refused, and nothing outside is
 * read. host/secret stands for a host file. */
TEST(beneath_follows_inside_refuses_outside)
{
    struct err e = {0};
    struct buf b = BUF_INIT;
    int fd;

    ASSERT_EQ(system("mkdir -p host act/real && printf secret > host/secret && "
                     "printf inside > act/real/f && ln -s real/f act/in && "
                     "ln -s \"$PWD/host/secret\" act/abs && ln -s ../host/secret act/up && "
                     "ln -s \"$PWD/host\" act/hostdir && ln -s ../real/f act/real/back"),
              0);
    ASSERT_OK(fstree_read_beneath("act", "in", &b, 100, "file", &e));
    ASSERT_STR_EQ(buf_str(&b), "inside");
    buf_reset(&b);
    ASSERT_OK(fstree_read_beneath("act", "real/back", &b, 100, "file", &e));
    ASSERT_STR_EQ(buf_str(&b), "inside");
    buf_reset(&b);

    const char *out[] = {"abs", "up", "hostdir/secret", "real/../../host/secret"};
    for (size_t i = 0; i < sizeof out / sizeof out[0]; i++) {
        char want[256];
        ASSERT_EQ(fstree_read_beneath("act", out[i], &b, 100, "file", &e), -EXDEV);
        snprintf(want, sizeof want, "a symbolic link in %s leads out of act", out[i]);
        ASSERT_STR_EQ(e.msg, want);
        ASSERT_EQ(b.len, 0);
    }
    ASSERT_EQ(fstree_read_beneath("act", "nothing", &b, 100, "file", &e), -ENOENT);
    ASSERT_EQ(fstree_read_beneath("act", "real/f/x", &b, 100, "file", &e), -ENOTDIR);
    ASSERT_EQ(fstree_read_beneath("act", "real", &b, 100, "file", &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "act/real: not a regular file");
    ASSERT_EQ(fstree_read_beneath("act", "in", &b, 3, "action file", &e), ERR_INVALID);
    ASSERT_STR_EQ(e.msg, "act/in: the action file is too large (limit 3 bytes)");
    fd = fstree_open_beneath("act", "hostdir", O_PATH, &e);
    ASSERT_EQ(fd, -EXDEV);
    buf_free(&b);
}

/* Packing a directory beneath a root: a linked context directory is refused; links inside go
 * into the archive as links, never followed. */
TEST(tar_beneath_never_reads_outside)
{
    struct tar t;
    struct tar_reader r;
    struct tar_entry ent;
    struct err e = {0};
    int rc, n = 0;

    ASSERT_EQ(system("mkdir -p host act/ctx && printf secret > host/secret && "
                     "printf d > act/ctx/Dockerfile && ln -s \"$PWD/host/secret\" act/ctx/s && "
                     "ln -s \"$PWD/host\" act/linked"),
              0);
    tar_init(&t);
    ASSERT_EQ(fstree_tar_beneath("act", "linked", ".", &t, 1 << 20, &e), -EXDEV);
    ASSERT_STR_EQ(e.msg, "a symbolic link in linked leads out of act");
    ASSERT_OK(fstree_tar_beneath("act", "ctx", ".", &t, 1 << 20, &e));
    tar_finish(&t);
    tar_reader_init(&r, t.out.data, t.out.len);
    while ((rc = tar_next(&r, &ent, &e)) > 0) {
        n++;
        if (ent.type == '0')
            ASSERT(ent.len == 1 && ent.data[0] == 'd'); /* the Dockerfile, nothing else */
        if (strcmp(ent.path, "s") == 0)
            ASSERT_EQ(ent.type, '2');
    }
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(n, 2);
    tar_reader_free(&r);
    tar_free(&t);
}

/* Kernels without openat2: every symlink on the way is refused, in the tree or out of it, and
 * plain paths still open. */
TEST(beneath_without_openat2_refuses_every_link)
{
    struct err e = {0};
    struct buf b = BUF_INIT;
    const char *links[] = {"in", "abs", "up", "hostdir/secret", "real/back"};

    ASSERT_EQ(system("mkdir -p host act/real && printf secret > host/secret && "
                     "printf inside > act/real/f && ln -s real/f act/in && "
                     "ln -s \"$PWD/host/secret\" act/abs && ln -s ../host/secret act/up && "
                     "ln -s \"$PWD/host\" act/hostdir && ln -s ../real/f act/real/back && "
                     "ln -s loop act/loop"),
              0);
    fstree_no_openat2 = true;
    ASSERT_OK(fstree_read_beneath("act", "./real//f", &b, 100, "file", &e));
    ASSERT_STR_EQ(buf_str(&b), "inside");
    buf_reset(&b);
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        char want[256];
        ASSERT_EQ(fstree_read_beneath("act", links[i], &b, 100, "file", &e), -ELOOP);
        snprintf(want, sizeof want,
                 "a symbolic link in %s cannot be followed (a loop, or a kernel without openat2)",
                 links[i]);
        ASSERT_STR_EQ(e.msg, want);
    }
    ASSERT_EQ(fstree_read_beneath("act", "real/../../host/secret", &b, 100, "file", &e), -EXDEV);
    ASSERT_EQ(fstree_read_beneath("act", "nothing", &b, 100, "file", &e), -ENOENT);
    ASSERT_EQ(b.len, 0);
    fstree_no_openat2 = false;
    /* with openat2: a loop inside the tree */
    ASSERT_EQ(fstree_read_beneath("act", "loop", &b, 100, "file", &e), -ELOOP);
    buf_free(&b);
}
