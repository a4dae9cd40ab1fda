/*
 * predict.c - direct-edge on a Raspberry Pi (Linux, aarch64 or armhf): CSV rows of raw sensor values on
 * stdin, the predictive mean and standard deviation of each row on stdout.
 *
 *     ./predict [-i] [-e] [model.bin] < rows.csv
 *
 * Each line holds the model's d inputs, comma-separated (a first line that does not parse as numbers
 * is taken as a header and skipped). The model is the one compiled in from model.h (direct-export
 * model.direct model.h), or a packed blob file given as an argument (direct-export model.direct model.bin).
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

/* Parse d comma-separated numbers; 1 on success. */
static int parse_row(char *line, double *x, uint32_t d) {
    char *p = line, *end;
    uint32_t k;
    for (k = 0; k < d; ++k) {
        x[k] = strtod(p, &end);
        if (end == p) {
            return 0;
        }
        while (*end == ' ' || *end == '\t') {
            ++end;
        }
        if (k + 1 < d) {
            if (*end != ',') {
                return 0;
            }
            p = end + 1;
        } else if (*end != '\0' && *end != '\n' && *end != '\r') {
            return 0;
        }
    }
    return 1;
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
    if (scale == NULL || zero == NULL || x == NULL || q == NULL || scratch == NULL) {
        fprintf(stderr, "predict: out of memory\n");
        return 2;
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
        if (!parse_row(line, x, d)) {
            if (row == 1) {
                continue; /* a header line */
            }
            fprintf(stderr, "predict: line %" PRIu32 ": expected %" PRIu32 " comma-separated numbers\n", row, d);
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
