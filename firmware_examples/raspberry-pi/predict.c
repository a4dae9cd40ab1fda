/*
 * predict.c - direct-edge on a Raspberry Pi (Linux, aarch64 or armhf): CSV rows of raw sensor values on
 * stdin, the predictive mean and standard deviation of each row on stdout.
 *
 *     ./predict [-i] [-e] [model.bin] < rows.csv
 *
 * Each line holds the model's raw columns, comma-separated (no quoting). The model is the one compiled
 * in from model.h (direct-export model.direct model.h), or a packed blob file given as an argument
 * (direct-export model.direct model.bin). With the blob's input schema (MF §10, written by default):
 * a first line whose cells are all names is a header, matched to the model's column names in any
 * order (other names: one line naming the missing and the unknown columns, exit 2); without a header
 * the columns are in the training order. A categorical column takes its level as text, a numeric
 * column with the mean-indicator policy takes an empty or NA cell as missing (the training mean and the
 * indicator); anything else the host refuses is refused here too, naming the line and column. A blob
 * without a schema takes its d inputs by position (a header line of names is skipped).
 * The output is CSV, as direct-run prints it: a header line, then one line per row,
 *
 *     mean,std                               (target units, docs/integer-spec.md §7)
 *     mean,std,mean_q,var_f_q,var_y_q        (with -i: also the integer outputs of IS §5)
 *
 * The answer is the trained model's exact predictive moments (IS §6, direct_predict_exact) when the blob
 * carries them, as direct-export writes by default, else the S-sample ensemble (IS §4-§5,
 * direct_predict); -e asks for the ensemble, as direct-run --ensemble does.
 *
 * Floating point is used only at the edges: quantising the inputs (IS §2, with the scale and zero point
 * the blob carries for the host) and showing the outputs (IS §7). The prediction itself is the integer
 * runtime (runtime/c), bit-exact with runtime/reference.py.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "direct.h"
#include "model.h"

#define MAX_LINE 65536
#define MAX_EXTRA 256u /* fields a line may have beyond the model's inputs (to name them in an error) */

/* Little-endian f64 / u32 fields of the blob (MF §2: mean_scale at 56, y_offset at 64, section table at
 * 72; MF §4: section 0 holds per input f64 scale, f64 zero point). */
static double blob_f64(const uint8_t *p) {
    uint64_t bits = 0;
    double v;
    int k;
    for (k = 7; k >= 0; --k) {
        bits = (bits << 8) | p[k];
    }
    memcpy(&v, &bits, sizeof v);
    return v;
}

static uint32_t blob_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* IS §2: q = clamp(floor(x / scale + zero + 1/2), -32768, 32767). */
static int16_t quantize(double x, double scale, double zero) {
    double q = floor(x / scale + zero + 0.5);
    if (q < -32768.0) {
        return INT16_MIN;
    }
    if (q > 32767.0) {
        return INT16_MAX;
    }
    return (int16_t)q;
}

/* The blob file, in a buffer malloc aligns for any type (MF §1 needs 4). */
static uint8_t *read_file(const char *path, uint32_t *size) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || n > 0x7FFFFFFFL ||
        fseek(f, 0, SEEK_SET) != 0 || (buf = malloc(n > 0 ? (size_t)n : 1u)) == NULL ||
        fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "predict: cannot read %s: %s\n", path, strerror(errno));
        exit(2);
    }
    fclose(f);
    *size = (uint32_t)n;
    return buf;
}

/* The raw columns of the model (MF §10, the blob's schema section), or, for a blob without one, its d
 * inputs as plain numeric columns known only by position. */
typedef struct {
    const uint8_t *name; /* UTF-8, name_len bytes (NULL without a schema) */
    uint32_t name_len;
    uint8_t kind;        /* 0 numeric, 1 categorical */
    uint8_t missing;     /* 0 refuse, 1 mean-indicator (the value, then NAME_missing) */
    double fill;         /* the training mean a missing value takes (policy 1) */
    uint32_t n_levels;   /* categorical: L levels, one-hot inputs in this order */
    const uint8_t *levels; /* L texts: u8 length, then the bytes */
    uint32_t first;      /* the column's first input */
} column;

/* Read the schema section into cols (at most d columns: each takes at least one input). Returns the
 * number of columns, 0 when the blob has no schema, or -1 when the section breaks an MF §10 rule this
 * reader relies on. */
static long read_schema(const uint8_t *blob, uint32_t d, column *cols) {
    uint32_t off = blob_u32(blob + 120), size = blob_u32(blob + 124), c, n, k = 0, j;
    const uint8_t *p = blob + off, *end = blob + off + size;
    if (size == 0) {
        return 0;
    }
    if (size < 5 || p[0] != 1u) {
        return -1;
    }
    n = (uint32_t)p[2] | ((uint32_t)p[3] << 8);
    p += 4;
    p += 1u + p[0]; /* the target's name */
    if (n < 1 || n > d) {
        return -1;
    }
    for (c = 0; c < n; ++c) {
        column *col = &cols[c];
        if (p >= end || p + 1u + p[0] + 2u > end || p[0] == 0) {
            return -1;
        }
        col->name_len = p[0];
        col->name = p + 1;
        p += 1u + p[0];
        col->kind = p[0];
        col->missing = p[1];
        p += 2;
        col->first = k;
        col->fill = 0.0;
        col->n_levels = 0;
        col->levels = NULL;
        if (col->kind == 0u) {
            if (p + 24 > end || col->missing > 1u) {
                return -1;
            }
            col->fill = blob_f64(p + 16);
            p += 24;
            k += col->missing == 1u ? 2u : 1u;
        } else if (col->kind == 1u && col->missing == 0u) {
            if (p + 2 > end) {
                return -1;
            }
            col->n_levels = (uint32_t)p[0] | ((uint32_t)p[1] << 8);
            p += 2;
            col->levels = p;
            for (j = 0; j < col->n_levels; ++j) {
                if (p >= end || p + 1u + p[0] > end) {
                    return -1;
                }
                p += 1u + p[0];
            }
            k += col->n_levels;
        } else {
            return -1;
        }
        if (k > d) {
            return -1;
        }
    }
    return k == d && p == end ? (long)n : -1;
}

/* Split line at commas into at most max cells, each trimmed of spaces, tabs and the line end (no
 * quoting: a cell holds no comma). Returns the count, or max + 1 when there are more. */
static uint32_t split(char *line, char **cells, uint32_t max) {
    uint32_t n = 0;
    char *p = line;
    for (;;) {
        char *start = p, *stop;
        while (*p != ',' && *p != '\0' && *p != '\n' && *p != '\r') {
            ++p;
        }
        stop = p;
        while (*start == ' ' || *start == '\t') {
            ++start;
        }
        while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t')) {
            --stop;
        }
        if (n == max) {
            return max + 1;
        }
        cells[n++] = start;
        if (*p != ',') {
            *stop = '\0';
            return n;
        }
        *stop = '\0';
        ++p;
    }
}

/* pandas' NA strings (runtime/schema.py MISSING): such a cell, or an empty one, is a missing value. */
static int is_missing(const char *cell) {
    static const char *const na[] = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
                                     "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a",
                                     "nan", "null"};
    size_t i;
    for (i = 0; i < sizeof na / sizeof na[0]; ++i) {
        if (strcmp(cell, na[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* 1 with *v when the whole cell reads as a number (strtod). */
static int number(const char *cell, double *v) {
    char *end;
    if (*cell == '\0') {
        return 0;
    }
    *v = strtod(cell, &end);
    return *end == '\0';
}

/* 1 when a cell is a name: not empty, not an NA string, not a number. */
static int is_name(const char *cell) {
    double v;
    return !is_missing(cell) && !number(cell, &v);
}

static int same_text(const uint8_t *text, uint32_t len, const char *cell) {
    return strlen(cell) == len && memcmp(text, cell, len) == 0;
}

/* A categorical cell as its level's text (runtime/schema.py level_text): a finite number is written
 * canonically (1, 1.0 and 01 are the level "1"; 2.5 is "2.5"), other text as it is. */
static const char *level_text(const char *cell, char *buf, size_t size) {
    double v;
    int digits;
    if (!number(cell, &v) || !isfinite(v)) {
        return cell;
    }
    if (v == floor(v) && fabs(v) < 9.2e18) {
        snprintf(buf, size, "%.0f", v == 0.0 ? 0.0 : v);
        return buf;
    }
    for (digits = 1; digits <= 17; ++digits) { /* the shortest text that reads back as v */
        snprintf(buf, size, "%.*g", digits, v);
        if (strtod(buf, NULL) == v) {
            break;
        }
    }
    return buf;
}

static void print_name(FILE *f, const column *col, uint32_t c) {
    if (col->name != NULL) {
        fprintf(f, "%.*s", (int)col->name_len, (const char *)col->name);
    } else {
        fprintf(f, "%" PRIu32, c + 1); /* "in column 3" */
    }
}

/* The header's cells matched to the schema's column names: order[c] = the cell of column c. 1, or 0
 * after one line on stderr naming the missing and the unknown columns. */
static int match_header(char **cells, uint32_t n_cells, const column *cols, uint32_t n_cols, uint32_t *order) {
    uint32_t c, j, bad = 0, missing;
    for (c = 0; c < n_cols; ++c) {
        order[c] = n_cells;
        for (j = 0; j < n_cells; ++j) {
            if (same_text(cols[c].name, cols[c].name_len, cells[j])) {
                order[c] = j;
            }
        }
        bad += order[c] == n_cells;
    }
    if (bad == 0 && n_cells == n_cols) {
        return 1;
    }
    missing = bad;
    fprintf(stderr, "predict: the header does not name the model's columns (");
    for (c = 0; c < n_cols; ++c) {
        print_name(stderr, &cols[c], c);
        fputs(c + 1 < n_cols ? ", " : ")", stderr);
    }
    for (c = 0, j = 0; c < n_cols; ++c) {
        if (order[c] == n_cells) {
            fputs(j++ == 0 ? "; missing " : ", ", stderr);
            print_name(stderr, &cols[c], c);
        }
    }
    for (j = 0, bad = 0; j < n_cells; ++j) {
        for (c = 0; c < n_cols && !same_text(cols[c].name, cols[c].name_len, cells[j]); ++c) {
        }
        if (c == n_cols) {
            fprintf(stderr, "%s%s", bad++ == 0 ? "; unknown " : ", ", cells[j]);
        }
    }
    if (missing == 0) { /* only extra columns (an ID, the target): the command that keeps the model's */
        fputs("; keep only the model's columns, e.g. cut -d, -f", stderr);
        for (j = 0, c = 0; j < n_cells; ++j) {
            uint32_t k;
            for (k = 0; k < n_cols && order[k] != j; ++k) {
            }
            if (k < n_cols) {
                fprintf(stderr, "%s%" PRIu32, c++ == 0 ? "" : ",", j + 1);
            }
        }
    }
    fputc('\n', stderr);
    return 0;
}

/* One data row -> the d real inputs x (MF §10). 1, or 0 after one line on stderr. */
static int prepare(char **cells, const column *cols, uint32_t n_cols, const uint32_t *order, uint32_t row,
                   double *x) {
    uint32_t c, j;
    char buf[40];
    for (c = 0; c < n_cols; ++c) {
        const column *col = &cols[c];
        const char *cell = cells[order[c]];
        double v;
        if (col->kind == 1u) {
            const uint8_t *level = col->levels;
            const char *text = level_text(cell, buf, sizeof buf);
            uint32_t hit = col->n_levels;
            for (j = 0; j < col->n_levels; ++j) {
                if (hit == col->n_levels && same_text(level + 1, level[0], text)) {
                    hit = j;
                }
                x[col->first + j] = 0.0;
                level += 1u + level[0];
            }
            if (hit == col->n_levels) {
                fprintf(stderr, "predict: line %" PRIu32 ": %s in column ", row,
                        is_missing(cell) ? "a missing value" : "a level not seen in training");
                print_name(stderr, col, c);
                fprintf(stderr, " ('%s')\n", cell);
                return 0;
            }
            x[col->first + hit] = 1.0;
        } else if (is_missing(cell) || (number(cell, &v) && v != v)) {
            if (col->missing == 0u) {
                fprintf(stderr, "predict: line %" PRIu32 ": a missing value in column ", row);
                print_name(stderr, col, c);
                fputc('\n', stderr);
                return 0;
            }
            x[col->first] = col->fill;
            x[col->first + 1] = 1.0;
        } else {
            if (!number(cell, &v) || isinf(v)) {
                fprintf(stderr, "predict: line %" PRIu32 ": '%s' in column ", row, cell);
                print_name(stderr, col, c);
                fputs(" is not a finite number\n", stderr);
                return 0;
            }
            x[col->first] = v;
            if (col->missing == 1u) {
                x[col->first + 1] = 0.0;
            }
        }
    }
    return 1;
}

/* Whether the first row is a header: every cell a name (not a number, not a missing value), unless it
 * is a row of levels, one per categorical column in place, which is data. */
static int is_header(char **cells, uint32_t n_cells, const column *cols, uint32_t n_cols) {
    uint32_t c, j, levels = n_cells == n_cols;
    char buf[40];
    for (c = 0; c < n_cells; ++c) {
        if (!is_name(cells[c])) {
            return 0;
        }
    }
    for (c = 0; c < n_cols && levels; ++c) {
        const uint8_t *level = cols[c].levels;
        const char *text = level_text(cells[c], buf, sizeof buf);
        uint32_t hit = 0;
        for (j = 0; j < cols[c].n_levels; ++j) {
            hit |= (uint32_t)same_text(level + 1, level[0], text);
            level += 1u + level[0];
        }
        levels = hit;
    }
    return !levels;
}

int main(int argc, char **argv) {
    const uint8_t *blob = model_blob.bytes;
    uint32_t size = MODEL_SIZE, d, k, row = 0;
    int integers = 0, ensemble = 0, i;
    const char *path = NULL;
    direct_model m;
    direct_status st;
    double mean_scale, y_offset, *scale, *zero, *x;
    int16_t *q, *scratch;
    column *cols;
    uint32_t n_cols, n_cells, c, *order, seen = 0;
    long n_schema;
    char **cells;
    static char line[MAX_LINE];

    for (i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "-i") == 0) {
            integers = 1;
        } else if (strcmp(argv[i], "-e") == 0) {
            ensemble = 1;
        } else {
            path = argv[i];
        }
    }
    if (path != NULL) {
        blob = read_file(path, &size);
    }
    st = direct_model_open(&m, blob, size);
    if (st != DIRECT_OK) {
        fprintf(stderr, "predict: the model is not a valid blob (%s)\n", direct_status_name(st));
        return 2;
    }
    d = direct_n_inputs(&m);
    mean_scale = blob_f64(blob + 56);
    y_offset = blob_f64(blob + 64);
    scale = malloc(d * sizeof *scale);
    zero = malloc(d * sizeof *zero);
    x = malloc(d * sizeof *x);
    q = malloc(d * sizeof *q);
    scratch = malloc(direct_scratch_size(&m));
    cols = malloc(d * sizeof *cols);
    order = malloc(d * sizeof *order);
    cells = malloc((d + MAX_EXTRA) * sizeof *cells);
    if (scale == NULL || zero == NULL || x == NULL || q == NULL || scratch == NULL || cols == NULL ||
        order == NULL || cells == NULL) {
        fprintf(stderr, "predict: out of memory\n");
        return 2;
    }
    n_schema = read_schema(blob, d, cols);
    if (n_schema < 0) {
        fprintf(stderr, "predict: the model's schema section is malformed (MF §10)\n");
        return 2;
    }
    n_cols = n_schema > 0 ? (uint32_t)n_schema : d;
    for (c = 0; c < n_cols; ++c) {
        order[c] = c; /* positional until a header says otherwise */
        if (n_schema == 0) {
            cols[c].name = NULL;
            cols[c].name_len = 0;
            cols[c].kind = 0;
            cols[c].missing = 0;
            cols[c].n_levels = 0;
            cols[c].levels = NULL;
            cols[c].first = c;
        }
    }
    for (k = 0; k < d; ++k) {
        const uint8_t *in = blob + blob_u32(blob + 72) + 16u * k;
        scale[k] = blob_f64(in);
        zero[k] = blob_f64(in + 8);
    }
    puts(integers ? "mean,std,mean_q,var_f_q,var_y_q" : "mean,std");
    while (fgets(line, sizeof line, stdin) != NULL) {
        direct_prediction p;
        ++row;
        if (line[0] == '\n' || line[0] == '\r' || line[0] == '\0') {
            continue;
        }
        if (row == 1 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
            memmove(line, line + 3, strlen(line + 3) + 1); /* a UTF-8 byte-order mark (Excel's CSV UTF-8) */
        }
        n_cells = split(line, cells, d + MAX_EXTRA - 1u);
        if (n_cells >= d + MAX_EXTRA) {
            fprintf(stderr, "predict: line %" PRIu32 ": more than %" PRIu32 " fields\n", row, d + MAX_EXTRA - 1u);
            return 2;
        }
        if (seen++ == 0 && is_header(cells, n_cells, cols, n_cols)) {
            if (n_schema > 0 && !match_header(cells, n_cells, cols, n_cols, order)) {
                return 2;
            }
            continue; /* without a schema the columns are positional and a header is only skipped */
        }
        if (n_cells != n_cols) {
            fprintf(stderr, "predict: line %" PRIu32 ": %" PRIu32 " comma-separated fields, expected %" PRIu32 "\n",
                    row, n_cells, n_cols);
            return 2;
        }
        if (!prepare(cells, cols, n_cols, order, row, x)) {
            return 2;
        }
        for (k = 0; k < d; ++k) {
            q[k] = quantize(x[k], scale[k], zero[k]);
        }
        if (direct_has_exact(&m) && !ensemble) {
            st = direct_predict_exact(&m, q, scratch, direct_scratch_size(&m), &p);
        } else {
            st = direct_predict(&m, q, scratch, direct_scratch_size(&m), &p);
        }
        if (st != DIRECT_OK) {
            fprintf(stderr, "predict: %s\n", direct_status_name(st));
            return 2;
        }
        printf("%.17g,%.17g", y_offset + mean_scale * (double)p.mean, mean_scale * sqrt((double)p.var_y));
        if (integers) {
            printf(",%" PRId32 ",%" PRIu64 ",%" PRIu64, p.mean, p.var_f, p.var_y);
        }
        putchar('\n');
    }
    return 0;
}
