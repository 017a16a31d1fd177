/* exprstr.c: text helpers of the expression module: GitHub's case-insensitive comparison
 * (Unicode simple upper-case mapping), JavaScript-style string-to-number conversion and
 * GitHub's number formatting. */
#include "exprint.h"

#include "runner/xalloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upper-case mapping as runs: code points first..last, every step-th one, map to cp + delta.
 * Generated from the Unicode 14 data (simple mappings only); U+0131 (dotless i) is left out on
 * purpose, as GitHub keeps it distinct from I. */
static const struct {
    uint32_t first, last;
    uint32_t step;
    int32_t delta;
} upper_runs[] = {
    {0x00061, 0x0007A, 1, -32},
    {0x000B5, 0x000B5, 1, 743},
    {0x000E0, 0x000F6, 1, -32},
    {0x000F8, 0x000FE, 1, -32},
    {0x000FF, 0x000FF, 1, 121},
    {0x00101, 0x0012F, 2, -1},
    {0x00133, 0x00137, 2, -1},
    {0x0013A, 0x00148, 2, -1},
    {0x0014B, 0x00177, 2, -1},
    {0x0017A, 0x0017E, 2, -1},
    {0x0017F, 0x0017F, 1, -300},
    {0x00180, 0x00180, 1, 195},
    {0x00183, 0x00185, 2, -1},
    {0x00188, 0x00188, 1, -1},
    {0x0018C, 0x0018C, 1, -1},
    {0x00192, 0x00192, 1, -1},
    {0x00195, 0x00195, 1, 97},
    {0x00199, 0x00199, 1, -1},
    {0x0019A, 0x0019A, 1, 163},
    {0x0019E, 0x0019E, 1, 130},
    {0x001A1, 0x001A5, 2, -1},
    {0x001A8, 0x001A8, 1, -1},
    {0x001AD, 0x001AD, 1, -1},
    {0x001B0, 0x001B0, 1, -1},
    {0x001B4, 0x001B6, 2, -1},
    {0x001B9, 0x001B9, 1, -1},
    {0x001BD, 0x001BD, 1, -1},
    {0x001BF, 0x001BF, 1, 56},
    {0x001C5, 0x001C5, 1, -1},
    {0x001C6, 0x001C6, 1, -2},
    {0x001C8, 0x001C8, 1, -1},
    {0x001C9, 0x001C9, 1, -2},
    {0x001CB, 0x001CB, 1, -1},
    {0x001CC, 0x001CC, 1, -2},
    {0x001CE, 0x001DC, 2, -1},
    {0x001DD, 0x001DD, 1, -79},
    {0x001DF, 0x001EF, 2, -1},
    {0x001F2, 0x001F2, 1, -1},
    {0x001F3, 0x001F3, 1, -2},
    {0x001F5, 0x001F5, 1, -1},
    {0x001F9, 0x0021F, 2, -1},
    {0x00223, 0x00233, 2, -1},
    {0x0023C, 0x0023C, 1, -1},
    {0x0023F, 0x00240, 1, 10815},
    {0x00242, 0x00242, 1, -1},
    {0x00247, 0x0024F, 2, -1},
    {0x00250, 0x00250, 1, 10783},
    {0x00251, 0x00251, 1, 10780},
    {0x00252, 0x00252, 1, 10782},
    {0x00253, 0x00253, 1, -210},
    {0x00254, 0x00254, 1, -206},
    {0x00256, 0x00257, 1, -205},
    {0x00259, 0x00259, 1, -202},
    {0x0025B, 0x0025B, 1, -203},
    {0x0025C, 0x0025C, 1, 42319},
    {0x00260, 0x00260, 1, -205},
    {0x00261, 0x00261, 1, 42315},
    {0x00263, 0x00263, 1, -207},
    {0x00265, 0x00265, 1, 42280},
    {0x00266, 0x00266, 1, 42308},
    {0x00268, 0x00268, 1, -209},
    {0x00269, 0x00269, 1, -211},
    {0x0026A, 0x0026A, 1, 42308},
    {0x0026B, 0x0026B, 1, 10743},
    {0x0026C, 0x0026C, 1, 42305},
    {0x0026F, 0x0026F, 1, -211},
    {0x00271, 0x00271, 1, 10749},
    {0x00272, 0x00272, 1, -213},
    {0x00275, 0x00275, 1, -214},
    {0x0027D, 0x0027D, 1, 10727},
    {0x00280, 0x00280, 1, -218},
    {0x00282, 0x00282, 1, 42307},
    {0x00283, 0x00283, 1, -218},
    {0x00287, 0x00287, 1, 42282},
    {0x00288, 0x00288, 1, -218},
    {0x00289, 0x00289, 1, -69},
    {0x0028A, 0x0028B, 1, -217},
    {0x0028C, 0x0028C, 1, -71},
    {0x00292, 0x00292, 1, -219},
    {0x0029D, 0x0029D, 1, 42261},
    {0x0029E, 0x0029E, 1, 42258},
    {0x00345, 0x00345, 1, 84},
    {0x00371, 0x00373, 2, -1},
    {0x00377, 0x00377, 1, -1},
    {0x0037B, 0x0037D, 1, 130},
    {0x003AC, 0x003AC, 1, -38},
    {0x003AD, 0x003AF, 1, -37},
    {0x003B1, 0x003C1, 1, -32},
    {0x003C2, 0x003C2, 1, -31},
    {0x003C3, 0x003CB, 1, -32},
    {0x003CC, 0x003CC, 1, -64},
    {0x003CD, 0x003CE, 1, -63},
    {0x003D0, 0x003D0, 1, -62},
    {0x003D1, 0x003D1, 1, -57},
    {0x003D5, 0x003D5, 1, -47},
    {0x003D6, 0x003D6, 1, -54},
    {0x003D7, 0x003D7, 1, -8},
    {0x003D9, 0x003EF, 2, -1},
    {0x003F0, 0x003F0, 1, -86},
    {0x003F1, 0x003F1, 1, -80},
    {0x003F2, 0x003F2, 1, 7},
    {0x003F3, 0x003F3, 1, -116},
    {0x003F5, 0x003F5, 1, -96},
    {0x003F8, 0x003F8, 1, -1},
    {0x003FB, 0x003FB, 1, -1},
    {0x00430, 0x0044F, 1, -32},
    {0x00450, 0x0045F, 1, -80},
    {0x00461, 0x00481, 2, -1},
    {0x0048B, 0x004BF, 2, -1},
    {0x004C2, 0x004CE, 2, -1},
    {0x004CF, 0x004CF, 1, -15},
    {0x004D1, 0x0052F, 2, -1},
    {0x00561, 0x00586, 1, -48},
    {0x010D0, 0x010FA, 1, 3008},
    {0x010FD, 0x010FF, 1, 3008},
    {0x013F8, 0x013FD, 1, -8},
    {0x01C80, 0x01C80, 1, -6254},
    {0x01C81, 0x01C81, 1, -6253},
    {0x01C82, 0x01C82, 1, -6244},
    {0x01C83, 0x01C84, 1, -6242},
    {0x01C85, 0x01C85, 1, -6243},
    {0x01C86, 0x01C86, 1, -6236},
    {0x01C87, 0x01C87, 1, -6181},
    {0x01C88, 0x01C88, 1, 35266},
    {0x01D79, 0x01D79, 1, 35332},
    {0x01D7D, 0x01D7D, 1, 3814},
    {0x01D8E, 0x01D8E, 1, 35384},
    {0x01E01, 0x01E95, 2, -1},
    {0x01E9B, 0x01E9B, 1, -59},
    {0x01EA1, 0x01EFF, 2, -1},
    {0x01F00, 0x01F07, 1, 8},
    {0x01F10, 0x01F15, 1, 8},
    {0x01F20, 0x01F27, 1, 8},
    {0x01F30, 0x01F37, 1, 8},
    {0x01F40, 0x01F45, 1, 8},
    {0x01F51, 0x01F57, 2, 8},
    {0x01F60, 0x01F67, 1, 8},
    {0x01F70, 0x01F71, 1, 74},
    {0x01F72, 0x01F75, 1, 86},
    {0x01F76, 0x01F77, 1, 100},
    {0x01F78, 0x01F79, 1, 128},
    {0x01F7A, 0x01F7B, 1, 112},
    {0x01F7C, 0x01F7D, 1, 126},
    {0x01FB0, 0x01FB1, 1, 8},
    {0x01FBE, 0x01FBE, 1, -7205},
    {0x01FD0, 0x01FD1, 1, 8},
    {0x01FE0, 0x01FE1, 1, 8},
    {0x01FE5, 0x01FE5, 1, 7},
    {0x0214E, 0x0214E, 1, -28},
    {0x02170, 0x0217F, 1, -16},
    {0x02184, 0x02184, 1, -1},
    {0x024D0, 0x024E9, 1, -26},
    {0x02C30, 0x02C5F, 1, -48},
    {0x02C61, 0x02C61, 1, -1},
    {0x02C65, 0x02C65, 1, -10795},
    {0x02C66, 0x02C66, 1, -10792},
    {0x02C68, 0x02C6C, 2, -1},
    {0x02C73, 0x02C73, 1, -1},
    {0x02C76, 0x02C76, 1, -1},
    {0x02C81, 0x02CE3, 2, -1},
    {0x02CEC, 0x02CEE, 2, -1},
    {0x02CF3, 0x02CF3, 1, -1},
    {0x02D00, 0x02D25, 1, -7264},
    {0x02D27, 0x02D27, 1, -7264},
    {0x02D2D, 0x02D2D, 1, -7264},
    {0x0A641, 0x0A66D, 2, -1},
    {0x0A681, 0x0A69B, 2, -1},
    {0x0A723, 0x0A72F, 2, -1},
    {0x0A733, 0x0A76F, 2, -1},
    {0x0A77A, 0x0A77C, 2, -1},
    {0x0A77F, 0x0A787, 2, -1},
    {0x0A78C, 0x0A78C, 1, -1},
    {0x0A791, 0x0A793, 2, -1},
    {0x0A794, 0x0A794, 1, 48},
    {0x0A797, 0x0A7A9, 2, -1},
    {0x0A7B5, 0x0A7C3, 2, -1},
    {0x0A7C8, 0x0A7CA, 2, -1},
    {0x0A7D1, 0x0A7D1, 1, -1},
    {0x0A7D7, 0x0A7D9, 2, -1},
    {0x0A7F6, 0x0A7F6, 1, -1},
    {0x0AB53, 0x0AB53, 1, -928},
    {0x0AB70, 0x0ABBF, 1, -38864},
    {0x0FF41, 0x0FF5A, 1, -32},
    {0x10428, 0x1044F, 1, -40},
    {0x104D8, 0x104FB, 1, -40},
    {0x10597, 0x105A1, 1, -39},
    {0x105A3, 0x105B1, 1, -39},
    {0x105B3, 0x105B9, 1, -39},
    {0x105BB, 0x105BC, 1, -39},
    {0x10CC0, 0x10CF2, 1, -64},
    {0x118C0, 0x118DF, 1, -32},
    {0x16E60, 0x16E7F, 1, -32},
    {0x1E922, 0x1E943, 1, -34},
};

/* Simple Unicode upper-case mapping of one code point, as GitHub's case-insensitive comparisons
 * use it (except that dotless i keeps its case). */
static uint32_t
expr_upper(uint32_t cp)
{
    size_t lo = 0, hi = sizeof upper_runs / sizeof upper_runs[0];

    if (cp < 0x80)
        return cp >= 'a' && cp <= 'z' ? cp - 32 : cp;
    /* Find the last run starting at or before cp. */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;

        if (upper_runs[mid].first <= cp)
            lo = mid;
        else
            hi = mid;
    }
    if (upper_runs[lo].first <= cp && cp <= upper_runs[lo].last &&
        (cp - upper_runs[lo].first) % upper_runs[lo].step == 0)
        return (uint32_t)((int32_t)cp + upper_runs[lo].delta);
    return cp;
}

/* Decodes one UTF-8 sequence at s[*i] (i < len) and advances *i. Returns the code point, or
 * (0x110000 + byte) for a byte that does not start a valid sequence. */
static uint32_t
utf8_next(const unsigned char *s, size_t len, size_t *i)
{
    unsigned char c = s[*i];
    uint32_t cp, min;
    size_t n;

    if (c < 0x80) {
        (*i)++;
        return c;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 1;
        cp = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 2;
        cp = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        goto bad;
    }
    if (len - *i <= n)
        goto bad;
    for (size_t k = 1; k <= n; k++) {
        if ((s[*i + k] & 0xC0) != 0x80)
            goto bad;
        cp = (cp << 6) | (s[*i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        goto bad;
    *i += n + 1;
    return cp;
bad:
    (*i)++;
    return 0x110000 + c;
}

/* Encodes cp (a valid code point) as UTF-8 into out; returns the length. */
static size_t
utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Upper-cases a whole string; see exprint.h. */
char *
expr_fold(const char *s, size_t len, size_t *outlen)
{
    /* A simple mapping never needs more than 4 bytes for a 1-byte input (ASCII maps to
     * ASCII, so in fact each code point keeps or grows its length by at most one byte). */
    char *out = xmalloc(len * 2 + 4);
    size_t i = 0, o = 0;

    while (i < len) {
        size_t at = i;
        uint32_t cp = utf8_next((const unsigned char *)s, len, &i);

        if (cp >= 0x110000) {
            out[o++] = s[at];
            continue;
        }
        o += utf8_put(expr_upper(cp), out + o);
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

/* Sort key of an upper-cased code point, in UTF-16 code unit order: code points from U+E000 to
 * U+FFFF sort after the supplementary planes, whose surrogates start at D800. Invalid bytes sort
 * last. */
static uint32_t
utf16_key(uint32_t cp)
{
    if (cp >= 0x110000)
        return cp + 0x200000;
    if (cp < 0xD800)
        return cp;
    if (cp >= 0x10000)
        return cp - 0x10000 + 0xD800;
    return cp + 0x100000;
}

/* Case-insensitive comparison; see exprint.h. */
int
expr_casecmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t i = 0, j = 0;

    while (i < alen && j < blen) {
        uint32_t ca = utf8_next((const unsigned char *)a, alen, &i);
        uint32_t cb = utf8_next((const unsigned char *)b, blen, &j);

        if (ca < 0x110000)
            ca = expr_upper(ca);
        if (cb < 0x110000)
            cb = expr_upper(cb);
        if (ca != cb)
            return utf16_key(ca) < utf16_key(cb) ? -1 : 1;
    }
    if (i < alen)
        return 1;
    if (j < blen)
        return -1;
    return 0;
}

/* Length of the JavaScript white space (or line terminator) at s[0..len), 0 when none. */
static size_t
js_space(const unsigned char *s, size_t len)
{
    if (len >= 1 && (s[0] == ' ' || (s[0] >= '\t' && s[0] <= '\r')))
        return 1;
    if (len >= 2 && s[0] == 0xC2 && s[1] == 0xA0) /* U+00A0 */
        return 2;
    if (len < 3)
        return 0;
    if (s[0] == 0xE1 && s[1] == 0x9A && s[2] == 0x80) /* U+1680 */
        return 3;
    if (s[0] == 0xE2 && s[1] == 0x80 &&
        ((s[2] >= 0x80 && s[2] <= 0x8A) || s[2] == 0xA8 || s[2] == 0xA9 || s[2] == 0xAF))
        return 3; /* U+2000..200A, U+2028, U+2029, U+202F */
    if (s[0] == 0xE2 && s[1] == 0x81 && s[2] == 0x9F) /* U+205F */
        return 3;
    if (s[0] == 0xE3 && s[1] == 0x80 && s[2] == 0x80) /* U+3000 */
        return 3;
    if (s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF) /* U+FEFF */
        return 3;
    return 0;
}

/* Value of a digit in the given base, or -1. */
static int
digit_value(char c, int base)
{
    int v;

    if (c >= '0' && c <= '9')
        v = c - '0';
    else if (c >= 'a' && c <= 'z')
        v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'Z')
        v = c - 'A' + 10;
    else
        return -1;
    return v < base ? v : -1;
}

/* Converts like JavaScript's Number(string); see exprint.h. */
double
expr_str_to_number(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, n, k;
    bool neg = false, digits = false;
    char *copy;
    double d;

    /* Trim white space on both sides. */
    while (i < len && (n = js_space(s + i, len - i)) > 0)
        i += n;
    while (len > i) {
        if (js_space(s + len - 1, 1) == 1)
            len -= 1;
        else if (len - i >= 2 && js_space(s + len - 2, 2) == 2)
            len -= 2;
        else if (len - i >= 3 && js_space(s + len - 3, 3) == 3)
            len -= 3;
        else
            break;
    }
    if (i >= len)
        return 0;
    s += i;
    len -= i;

    /* 0x, 0o, 0b: unsigned integers in another base. */
    if (len > 2 && s[0] == '0' && strchr("xXoObB", s[1]) != NULL && s[1] != '\0') {
        int base = (s[1] == 'x' || s[1] == 'X') ? 16 : (s[1] == 'o' || s[1] == 'O') ? 8 : 2;

        d = 0;
        for (k = 2; k < len; k++) {
            int v = digit_value((char)s[k], base);

            if (v < 0)
                return NAN;
            d = d * base + v;
        }
        return d;
    }

    k = 0;
    if (s[0] == '+' || s[0] == '-') {
        neg = s[0] == '-';
        k = 1;
    }
    if (len - k == 8 && memcmp(s + k, "Infinity", 8) == 0)
        return neg ? -INFINITY : INFINITY;
    /* digits [. digits] [e [+-] digits], with at least one mantissa digit */
    while (k < len && s[k] >= '0' && s[k] <= '9') {
        k++;
        digits = true;
    }
    if (k < len && s[k] == '.') {
        k++;
        while (k < len && s[k] >= '0' && s[k] <= '9') {
            k++;
            digits = true;
        }
    }
    if (!digits)
        return NAN;
    if (k < len && (s[k] == 'e' || s[k] == 'E')) {
        bool exp_digits = false;

        k++;
        if (k < len && (s[k] == '+' || s[k] == '-'))
            k++;
        while (k < len && s[k] >= '0' && s[k] <= '9') {
            k++;
            exp_digits = true;
        }
        if (!exp_digits)
            return NAN;
    }
    if (k != len)
        return NAN;
    copy = xstrndup((const char *)s, len);
    d = strtod(copy, NULL);
    free(copy);
    return d;
}

/* Formats a number as GitHub prints it: up to 15 significant digits, "E+XX" for large and
 * small magnitudes, "Infinity", "-Infinity", "NaN", and 0 for negative zero. */
void
expr_number_format(double d, char *buf, size_t size)
{
    if (isnan(d))
        snprintf(buf, size, "NaN");
    else if (isinf(d))
        snprintf(buf, size, d < 0 ? "-Infinity" : "Infinity");
    else if (d == 0)
        snprintf(buf, size, "0");
    else
        snprintf(buf, size, "%.15G", d);
}
