/* test-fstree.c: whole trees on the host: copying (modes, symlinks as symlinks, files a
 * .gitignore would hide), packing into a tar that the system's tar(1) extracts the same way, the
 * size cap, and removal (including a missing path and a symlink to outside the tree). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
