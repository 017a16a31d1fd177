/* test-yamldoc.c: the YAML document layer. Covers: 1-based positions of scalars, keys,
 * collections and empty values; several documents; plain scalars not resolved (on/yes/no stay
 * strings); the YAML 1.2 core schema in ynode_to_json (null, bool, int, 0x/0o, float, .inf,
 * .nan, underscores stay strings, quoted and block scalars stay strings, !!str); anchors and
 * aliases; an alias bomb and deep nesting fail cleanly; duplicate keys name both positions;
 * unknown anchors; syntax errors carry file:line:col; ynode_get/is_null/copy; ydoc_quote. */
#include "harness.h"

#include "runner/xalloc.h"
#include "yamldoc.h"

/* Parses src (one document) or fails the test. */
static struct ynode *
parse_ok(const char *src)
{
    struct ynode *n = NULL;
    struct err e = {0};
    int rc = ydoc_parse("t.yml", src, strlen(src), &n, &e);

    if (rc < 0)
        test_fail(__FILE__, __LINE__, "parse failed: %s", e.msg);
    return n;
}

/* Parses src expecting an error; returns the message in a static buffer. */
static const char *
parse_err(const char *src)
{
    static struct err e;
    struct ynode *n = NULL;

    memset(&e, 0, sizeof e);
    if (ydoc_parse("t.yml", src, strlen(src), &n, &e) == 0) {
        ynode_free(n);
        test_fail(__FILE__, __LINE__, "parse of \"%.40s\" succeeded", src);
    }
    ASSERT(n == NULL);
    ASSERT_EQ(e.code, ERR_INVALID);
    return e.msg;
}

/* Returns the compact JSON text of a node's core-schema value (static buffer). */
static const char *
as_json(const struct ynode *n)
{
    static char out[4096];
    json_t *j = ynode_to_json(n);
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);

    snprintf(out, sizeof out, "%s", s ? s : "(null)");
    free(s);
    json_decref(j);
    return out;
}

TEST(positions)
{
    struct ynode *r = parse_ok("on: push\n"
                               "jobs:\n"
                               "  build:\n"
                               "    runs-on: [a, 'b']\n"
                               "    steps:\n"
                               "      - run: echo\n"
                               "        name:\n"
                               "  \"quoted\": x\n");
    ASSERT_EQ(r->kind, YNODE_MAP);
    ASSERT_EQ(r->pos.line, 1);
    ASSERT_EQ(r->pos.col, 1);
    ASSERT_EQ(r->keys[0]->pos.line, 1);
    ASSERT_EQ(r->items[0]->pos.col, 5);
    ASSERT_EQ(r->items[0]->end.col, 9);
    struct ynode *jobs = ynode_get(r, "jobs");
    ASSERT_EQ(jobs->pos.line, 3);
    ASSERT_EQ(jobs->pos.col, 3);
    struct ynode *build = ynode_get(jobs, "build");
    struct ynode *ro = ynode_get(build, "runs-on");
    ASSERT_EQ(ro->kind, YNODE_SEQ);
    ASSERT_EQ(ro->pos.line, 4);
    ASSERT_EQ(ro->pos.col, 14);
    ASSERT_EQ(ro->items[1]->pos.col, 18);
    ASSERT(ro->items[1]->quoted);
    ASSERT(!ro->items[0]->quoted);
    struct ynode *step = ynode_get(build, "steps")->items[0];
    ASSERT_EQ(step->pos.line, 6);
    ASSERT_EQ(step->pos.col, 9);
    /* An empty value sits just after the colon. */
    struct ynode *name = ynode_get(step, "name");
    ASSERT(ynode_is_null(name));
    ASSERT_EQ(name->pos.line, 7);
    ASSERT_EQ(name->pos.col, 14);
    /* A quoted key's position is its opening quote. */
    ASSERT_EQ(jobs->keys[1]->pos.line, 8);
    ASSERT_EQ(jobs->keys[1]->pos.col, 3);
    ASSERT_STR_EQ(jobs->keys[1]->str, "quoted");
    ynode_free(r);
}

TEST(multiple_documents)
{
    const char *src = "a: 1\n---\n- x\n---\n\"s\"\n";
    struct ynode **docs = NULL;
    size_t n = 0;
    struct err e = {0};

    ASSERT_OK(ydoc_parse_all("t.yml", src, strlen(src), &docs, &n, &e));
    ASSERT_EQ(n, 3);
    ASSERT_EQ(docs[0]->kind, YNODE_MAP);
    ASSERT_EQ(docs[1]->kind, YNODE_SEQ);
    ASSERT_EQ(docs[1]->pos.line, 3);
    ASSERT_EQ(docs[2]->kind, YNODE_SCALAR);
    ASSERT_STR_EQ(docs[2]->str, "s");
    for (size_t i = 0; i < n; i++)
        ynode_free(docs[i]);
    free(docs);

    /* Empty stream: no documents; ydoc_parse gives NULL. */
    ASSERT_OK(ydoc_parse_all("t.yml", "", 0, &docs, &n, &e));
    ASSERT_EQ(n, 0);
    free(docs);
    struct ynode *one = (struct ynode *)1;
    ASSERT_OK(ydoc_parse("t.yml", "# only a comment\n", 17, &one, &e));
    ASSERT(one == NULL);
}

TEST(plain_scalars_not_yaml11)
{
    struct ynode *r = parse_ok("on: yes\nno: off\ny: n\n");

    ASSERT_STR_EQ(r->keys[0]->str, "on");
    ASSERT_STR_EQ(r->items[0]->str, "yes");
    ASSERT(ynode_get(r, "no") != NULL);
    ASSERT_STR_EQ(as_json(r), "{\"no\":\"off\",\"on\":\"yes\",\"y\":\"n\"}");
    ynode_free(r);
}

TEST(core_schema)
{
    struct ynode *r = parse_ok("- null\n- Null\n- NULL\n- ~\n-\n- true\n- False\n- TRUE\n"
                               "- 42\n- -7\n- +3\n- 0x1F\n- 0o17\n- 1.5\n- -2.5e3\n- .5\n"
                               "- .inf\n- -.Inf\n- .nan\n- 12_345\n- '1'\n- \"true\"\n"
                               "- !!str 5\n- yes\n- 0x\n- 1e\n- |\n  12\n- 99999999999999999999\n"
                               "- !!null\n");
    ASSERT_STR_EQ(as_json(r), "[null,null,null,null,null,true,false,true,"
                              "42,-7,3,31,15,1.5,-2500.0,0.5,"
                              "{\"$number\":\"Infinity\"},{\"$number\":\"-Infinity\"},"
                              "{\"$number\":\"NaN\"},\"12_345\",\"1\",\"true\","
                              "\"5\",\"yes\",\"0x\",\"1e\",\"12\\n\",1e20,null]");
    ASSERT(ynode_is_null(r->items[4]));
    ASSERT(!ynode_is_null(r->items[20]));
    ynode_free(r);
}

TEST(anchors_and_aliases)
{
    struct ynode *r = parse_ok("base: &b\n  x: 1\n  y: [a, b]\ncopy: *b\nlist: [&s hi, *s]\n");
    struct ynode *copy = ynode_get(r, "copy");

    ASSERT_EQ(copy->kind, YNODE_MAP);
    ASSERT(copy != ynode_get(r, "base"));
    ASSERT_STR_EQ(as_json(copy), "{\"x\":1,\"y\":[\"a\",\"b\"]}");
    ASSERT_STR_EQ(as_json(ynode_get(r, "list")), "[\"hi\",\"hi\"]");
    ynode_free(r);
    ASSERT_STR_CONTAINS(parse_err("a: *nope\n"), "t.yml:1:4: unknown anchor 'nope'");
    /* An alias cannot refer to the node it is inside. */
    ASSERT_STR_CONTAINS(parse_err("a: &x [1, *x]\n"), "unknown anchor 'x'");
}

TEST(alias_bomb)
{
    const char *src = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                      "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                      "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                      "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                      "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                      "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                      "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                      "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n";
    ASSERT_STR_CONTAINS(parse_err(src), "aliases expand to too much data");

    /* Big strings count too. */
    size_t big = 1u << 20;
    char *s = xmalloc(big + 200);
    strcpy(s, "a: &a ");
    memset(s + 6, 'x', big);
    strcpy(s + 6 + big, "\nb: [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, "
                        "*a, *a, *a]\n");
    ASSERT_STR_CONTAINS(parse_err(s), "aliases expand to too much data");
    free(s);
}

TEST(deep_nesting)
{
    size_t n = 100000;
    char *s = xmalloc(2 * n + 2);

    memset(s, '[', n);
    memset(s + n, ']', n);
    s[2 * n] = '\0';
    ASSERT_STR_CONTAINS(parse_err(s), "nested too deeply");
    /* Exactly at the limit is fine. */
    memset(s, 0, 2 * n + 2);
    memset(s, '[', YDOC_MAX_DEPTH);
    memset(s + YDOC_MAX_DEPTH, ']', YDOC_MAX_DEPTH);
    struct ynode *r = parse_ok(s);
    ynode_free(r);
    free(s);
    /* Within the limit on its own, but an alias placed deep would cross it. */
    char *deep = xmalloc(400);
    char *p = deep;
    p += sprintf(p, "a: &a ");
    for (int i = 0; i < 40; i++)
        *p++ = '[';
    *p++ = '1';
    for (int i = 0; i < 40; i++)
        *p++ = ']';
    p += sprintf(p, "\nb: ");
    for (int i = 0; i < 30; i++)
        *p++ = '[';
    p += sprintf(p, "*a");
    for (int i = 0; i < 30; i++)
        *p++ = ']';
    strcpy(p, "\n");
    ASSERT_STR_CONTAINS(parse_err(deep), "t.yml:2:34: alias nested too deeply");
    free(deep);
}

TEST(duplicate_keys)
{
    ASSERT_STR_EQ(parse_err("a: 1\nb:\n  x: 1\n  y: 2\n  x: 3\n"),
                  "t.yml:5:3: duplicate key 'x' (first defined at line 3, column 3)");
    ASSERT_STR_EQ(parse_err("{a: 1, b: 2, 'a': 3}\n"),
                  "t.yml:1:14: duplicate key 'a' (first defined at line 1, column 2)");
    /* Keys that differ only in case are different. */
    struct ynode *r = parse_ok("a: 1\nA: 2\n");
    ASSERT_EQ(r->n, 2);
    ynode_free(r);
}

TEST(syntax_errors)
{
    ASSERT_STR_CONTAINS(parse_err("a: b: c\n"), "t.yml:1:5: mapping values are not allowed");
    ASSERT_STR_CONTAINS(parse_err("a:\n  - x\n - y\n"), "t.yml:3:");
    ASSERT_STR_CONTAINS(parse_err("a: \"unterminated\n"), "t.yml:");
    ASSERT_STR_CONTAINS(parse_err("a: \x01\n"), "t.yml:1:");
}

TEST(get_copy_quote)
{
    struct ynode *r = parse_ok("k: v\nm: {x: [1, 2]}\n");
    struct ynode *c = ynode_copy(r);

    ASSERT(ynode_get(r, "nope") == NULL);
    ASSERT(ynode_get(NULL, "k") == NULL);
    ASSERT(ynode_get(ynode_get(r, "k"), "k") == NULL);
    ASSERT_STR_EQ(as_json(c), "{\"k\":\"v\",\"m\":{\"x\":[1,2]}}");
    ASSERT_EQ(ynode_get(c, "m")->pos.line, 2);
    ynode_free(r);
    ynode_free(c);
    ynode_free(NULL);
    ASSERT(ynode_copy(NULL) == NULL);

    char *q = ydoc_quote("a\nb", 3);
    ASSERT_STR_EQ(q, "a\\x0ab");
    free(q);
    char long_[100];
    memset(long_, 'z', sizeof long_);
    q = ydoc_quote(long_, sizeof long_);
    ASSERT_EQ(strlen(q), 63);
    ASSERT_STR_CONTAINS(q, "zzz...");
    free(q);
}
