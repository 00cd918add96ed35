/* flux for Node.js: a N-API addon over the C ABI (flux.h), wrapped by ../index.js.
 *
 * Written in C against node_api.h alone (no node-addon-api, no node-gyp): it compiles with gcc
 * and Debian's libnode-dev headers, with no npm download (see README.md for why). N-API is
 * ABI-stable, so one build serves every Node.js from 18 on.
 *
 * Handles are JS externals whose finalizer frees the C handle when the JS object is collected;
 * close() frees it at once (and the finalizer then does nothing). Every call runs on the JS
 * thread, so flux_last_error() read right after a failing call is that call's message. Errors
 * are thrown as instances of the FluxError class that index.js registers (setErrorClass):
 * err.code is "FLUX_INVALID_COST" and the like, err.result the flux_result number.
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include "flux.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_MS 1e6

/* The FluxError class of this environment (each worker thread has its own): instance data,
 * never a global, since a reference is valid only in the environment that made it. */
static void delete_error_class(napi_env env, void *data, void *hint) {
    (void)hint;
    napi_delete_reference(env, (napi_ref)data);
}

static const char *result_code(flux_result r) {
    switch (r) {
    case FLUX_RESULT_PANIC: return "FLUX_PANIC";
    case FLUX_RESULT_NULL_ARGUMENT: return "FLUX_NULL_ARGUMENT";
    case FLUX_RESULT_INVALID_UTF8: return "FLUX_INVALID_UTF8";
    case FLUX_RESULT_INVALID_REQUESTS: return "FLUX_INVALID_REQUESTS";
    case FLUX_RESULT_INVALID_PERIOD: return "FLUX_INVALID_PERIOD";
    case FLUX_RESULT_INVALID_BURST: return "FLUX_INVALID_BURST";
    case FLUX_RESULT_INVALID_COST: return "FLUX_INVALID_COST";
    case FLUX_RESULT_UNKNOWN_ALGORITHM: return "FLUX_UNKNOWN_ALGORITHM";
    case FLUX_RESULT_INVALID_KEY: return "FLUX_INVALID_KEY";
    case FLUX_RESULT_INVALID_ARGUMENT: return "FLUX_INVALID_ARGUMENT";
    case FLUX_RESULT_STORE_ERROR: return "FLUX_STORE_ERROR";
    default: return "FLUX_ERROR";
    }
}

/* Throws a FluxError(code, result, message); `message` NULL means flux_last_error(). */
static void throw_flux(napi_env env, flux_result r, const char *message) {
    napi_value ctor, args[3], err;
    napi_ref error_class = NULL;
    napi_get_instance_data(env, (void **)&error_class);
    if (message == NULL) {
        message = flux_last_error();
        if (message[0] == '\0') {
            message = flux_result_message((int)r);
        }
    }
    napi_create_string_utf8(env, result_code(r), NAPI_AUTO_LENGTH, &args[0]);
    napi_create_int32(env, (int32_t)r, &args[1]);
    napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &args[2]);
    if (error_class != NULL && napi_get_reference_value(env, error_class, &ctor) == napi_ok &&
        ctor != NULL && napi_new_instance(env, ctor, 3, args, &err) == napi_ok) {
        napi_throw(env, err);
    } else {
        napi_throw_error(env, result_code(r), message);
    }
}

/* A N-API failure (a wrong argument type from index.js): throws a TypeError once. */
#define NAPI_OK(env, call)                                                        \
    do {                                                                          \
        if ((call) != napi_ok) {                                                  \
            bool pending_ = false;                                                \
            napi_is_exception_pending((env), &pending_);                          \
            if (!pending_) napi_throw_type_error((env), NULL, "flux: bad argument"); \
            return NULL;                                                          \
        }                                                                         \
    } while (0)

/* ---- handles ---------------------------------------------------------------------------- */

typedef struct {
    flux_limiter *limiter;
    double *out; /* the Float64Array(6) the decision is written to, kept alive by `out_ref` */
    napi_ref out_ref;
    /* Async calls in flight (touched on the JS thread only) and a close() that waits for them:
     * a worker thread may be inside flux_limiter_hit with this limiter. */
    int pending;
    bool close_requested;
} limiter_box;

typedef struct {
    flux_redis *redis;
} redis_box;

typedef struct {
    flux_clock *clock;
} clock_box;

typedef struct {
    flux_shared *shared;
} shared_box;

static void limiter_finalize(napi_env env, void *data, void *hint) {
    limiter_box *box = data;
    (void)hint;
    flux_limiter_free(box->limiter);
    if (box->out_ref != NULL) {
        napi_delete_reference(env, box->out_ref);
    }
    free(box);
}

static void redis_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    flux_redis_free(((redis_box *)data)->redis);
    free(data);
}

static void shared_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    flux_shared_free(((shared_box *)data)->shared);
    free(data);
}

static void clock_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    flux_clock_free(((clock_box *)data)->clock);
    free(data);
}

static void *unwrap(napi_env env, napi_value v) {
    void *data = NULL;
    napi_valuetype t;
    if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
        napi_get_value_external(env, v, &data) != napi_ok) {
        return NULL;
    }
    return data;
}

/* ---- arguments -------------------------------------------------------------------------- */

/* A JS string as UTF-8: in `stack` when it fits, else malloc'd (*heap set, caller frees). */
static const char *get_key(napi_env env, napi_value v, char *stack, size_t cap, size_t *len,
                           char **heap) {
    *heap = NULL;
    if (napi_get_value_string_utf8(env, v, stack, cap, len) != napi_ok) {
        napi_throw_type_error(env, NULL, "flux: a key must be a string");
        return NULL;
    }
    if (*len + 1 < cap) {
        return stack;
    }
    /* Possibly truncated: ask for the full length, then copy it all. */
    napi_get_value_string_utf8(env, v, NULL, 0, len);
    *heap = malloc(*len + 1);
    if (*heap == NULL) {
        napi_throw_error(env, NULL, "flux: out of memory");
        return NULL;
    }
    napi_get_value_string_utf8(env, v, *heap, *len + 1, len);
    return *heap;
}

static bool get_u64(napi_env env, napi_value v, uint64_t *out) {
    double d;
    napi_valuetype t;
    if (napi_typeof(env, v, &t) != napi_ok || t == napi_undefined || t == napi_null) {
        *out = 0;
        return true;
    }
    if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || d > 18446744073709549568.0) {
        napi_throw_range_error(env, "FLUX_INVALID_ARGUMENT",
                               "flux: expected a non-negative number");
        return false;
    }
    *out = (uint64_t)d;
    return true;
}

static napi_value prop(napi_env env, napi_value obj, const char *name) {
    napi_value v = NULL;
    napi_get_named_property(env, obj, name, &v);
    return v;
}

/* A string property as a malloc'd C string, or NULL when absent. */
static char *string_prop(napi_env env, napi_value obj, const char *name, bool *ok) {
    napi_value v = prop(env, obj, name);
    napi_valuetype t;
    size_t len = 0;
    char *s;
    *ok = true;
    if (v == NULL || napi_typeof(env, v, &t) != napi_ok || t == napi_undefined || t == napi_null) {
        return NULL;
    }
    if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
        napi_throw_type_error(env, NULL, "flux: expected a string option");
        *ok = false;
        return NULL;
    }
    s = malloc(len + 1);
    if (s == NULL) {
        *ok = false;
        return NULL;
    }
    napi_get_value_string_utf8(env, v, s, len + 1, &len);
    return s;
}

static void write_decision(const flux_decision *d, double *out) {
    out[0] = d->allowed ? 1.0 : 0.0;
    out[1] = (double)d->limit;
    out[2] = (double)d->remaining;
    out[3] = (double)d->reset_after_ns / NS_PER_MS;
    out[4] = (double)d->retry_after_ns / NS_PER_MS;
    out[5] = (double)d->source;
}

/* ---- functions -------------------------------------------------------------------------- */

static napi_value version(napi_env env, napi_callback_info info) {
    napi_value v;
    (void)info;
    NAPI_OK(env, napi_create_string_utf8(env, flux_version(), NAPI_AUTO_LENGTH, &v));
    return v;
}

static napi_value set_error_class(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    napi_ref ref = NULL;
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    NAPI_OK(env, napi_create_reference(env, argv[0], 1, &ref));
    /* Replacing earlier instance data does not finalize it: delete the old reference here. */
    {
        napi_ref old = NULL;
        if (napi_get_instance_data(env, (void **)&old) == napi_ok && old != NULL) {
            napi_delete_reference(env, old);
        }
    }
    NAPI_OK(env, napi_set_instance_data(env, ref, delete_error_class, NULL));
    return NULL;
}

/* clockNew(startMs) -> external */
static napi_value clock_new(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], ext;
    double start_ms;
    clock_box *box;
    flux_result r;
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    NAPI_OK(env, napi_get_value_double(env, argv[0], &start_ms));
    box = calloc(1, sizeof *box);
    if (box == NULL) return NULL;
    r = flux_clock_new_manual((uint64_t)(start_ms * NS_PER_MS), &box->clock);
    if (r != FLUX_RESULT_OK) {
        free(box);
        throw_flux(env, r, NULL);
        return NULL;
    }
    NAPI_OK(env, napi_create_external(env, box, clock_finalize, NULL, &ext));
    return ext;
}

/* clockAdvance(clock, ms) */
static napi_value clock_advance(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    double ms;
    clock_box *box;
    flux_result r;
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    box = unwrap(env, argv[0]);
    NAPI_OK(env, napi_get_value_double(env, argv[1], &ms));
    if (!(ms >= 0)) {
        throw_flux(env, FLUX_RESULT_INVALID_ARGUMENT, "a negative or NaN duration");
        return NULL;
    }
    r = flux_clock_advance(box != NULL ? box->clock : NULL, (uint64_t)(ms * NS_PER_MS));
    if (r != FLUX_RESULT_OK) throw_flux(env, r, NULL);
    return NULL;
}

/* redisNew({url, nodes, cluster, poolSize, timeoutMs, keyPrefix, failClosed}) -> external */
static napi_value redis_new(napi_env env, napi_callback_info info) {
    size_t argc = 1, i;
    napi_value argv[1], ext, v;
    flux_redis_options o;
    redis_box *box = NULL;
    char *url, *key_prefix, **nodes = NULL;
    uint32_t node_count = 0;
    uint64_t pool = 0, timeout = 0;
    bool ok1, ok2, flag = false, is_array = false;
    flux_result r = FLUX_RESULT_OK;
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    memset(&o, 0, sizeof o);
    url = string_prop(env, argv[0], "url", &ok1);
    key_prefix = string_prop(env, argv[0], "keyPrefix", &ok2);
    if (!ok1 || !ok2 || !get_u64(env, prop(env, argv[0], "poolSize"), &pool) ||
        !get_u64(env, prop(env, argv[0], "timeoutMs"), &timeout)) {
        goto done;
    }
    v = prop(env, argv[0], "nodes");
    if (v != NULL && napi_is_array(env, v, &is_array) == napi_ok && is_array) {
        napi_get_array_length(env, v, &node_count);
        nodes = calloc(node_count + 1, sizeof *nodes);
        for (i = 0; nodes != NULL && i < node_count; i++) {
            napi_value e;
            size_t len = 0;
            napi_get_element(env, v, (uint32_t)i, &e);
            if (napi_get_value_string_utf8(env, e, NULL, 0, &len) != napi_ok) {
                napi_throw_type_error(env, NULL, "flux: nodes must be strings");
                goto done;
            }
            nodes[i] = malloc(len + 1);
            if (nodes[i] != NULL) napi_get_value_string_utf8(env, e, nodes[i], len + 1, &len);
        }
    }
    o.url = url;
    o.key_prefix = key_prefix;
    o.nodes = (const char *const *)nodes;
    o.node_count = node_count;
    v = prop(env, argv[0], "cluster");
    if (v != NULL && napi_get_value_bool(env, v, &flag) == napi_ok) o.cluster = flag;
    flag = false;
    v = prop(env, argv[0], "failClosed");
    if (v != NULL && napi_get_value_bool(env, v, &flag) == napi_ok) o.fail_closed = flag;
    o.pool_size = (uint32_t)pool;
    o.timeout_ms = timeout;
    box = calloc(1, sizeof *box);
    if (box == NULL) goto done;
    r = flux_redis_new(&o, &box->redis);
    if (r != FLUX_RESULT_OK) {
        throw_flux(env, r, NULL);
        free(box);
        box = NULL;
        goto done;
    }
done:
    free(url);
    free(key_prefix);
    if (nodes != NULL) {
        for (i = 0; i < node_count; i++) free(nodes[i]);
        free(nodes);
    }
    if (box == NULL) return NULL;
    NAPI_OK(env, napi_create_external(env, box, redis_finalize, NULL, &ext));
    return ext;
}

/* redisPing(redis) */
static napi_value redis_ping(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    redis_box *box;
    flux_result r;
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    box = unwrap(env, argv[0]);
    r = flux_redis_ping(box != NULL ? box->redis : NULL);
    if (r != FLUX_RESULT_OK) throw_flux(env, r, NULL);
    return NULL;
}

/* sharedOpen({path, keyPrefix, maxKeys}) -> external */
static napi_value shared_open(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], ext;
    flux_shared_options o;
    shared_box *box = NULL;
    char *path, *key_prefix;
    uint64_t max_keys = 0;
    bool ok1, ok2;
    flux_result r;
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    path = string_prop(env, argv[0], "path", &ok1);
    key_prefix = string_prop(env, argv[0], "keyPrefix", &ok2);
    if (ok1 && ok2 && get_u64(env, prop(env, argv[0], "maxKeys"), &max_keys)) {
        memset(&o, 0, sizeof o);
        o.path = path;
        o.key_prefix = key_prefix;
        o.max_keys = (size_t)max_keys;
        box = calloc(1, sizeof *box);
        if (box != NULL) {
            r = flux_shared_open(&o, &box->shared);
            if (r != FLUX_RESULT_OK) {
                throw_flux(env, r, NULL);
                free(box);
                box = NULL;
            }
        }
    }
    free(path);
    free(key_prefix);
    if (box == NULL) return NULL;
    NAPI_OK(env, napi_create_external(env, box, shared_finalize, NULL, &ext));
    return ext;
}

/* limiterNew({requests, periodMs, burst, algorithm, maxKeys, prefix}, clock|null, redis|null,
 *            out: Float64Array(6), shared|null) -> external */
static napi_value limiter_new(napi_env env, napi_callback_info info) {
    size_t argc = 5, out_len = 0;
    napi_value argv[5], ext;
    flux_limiter_options o;
    uint64_t requests, burst, algorithm, max_keys;
    double period_ms = 0;
    char *prefix;
    bool ok;
    clock_box *clock;
    redis_box *redis;
    shared_box *shared;
    limiter_box *box;
    napi_typedarray_type type;
    void *data = NULL;
    flux_result r;
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (!get_u64(env, prop(env, argv[0], "requests"), &requests) ||
        !get_u64(env, prop(env, argv[0], "burst"), &burst) ||
        !get_u64(env, prop(env, argv[0], "algorithm"), &algorithm) ||
        !get_u64(env, prop(env, argv[0], "maxKeys"), &max_keys)) {
        return NULL;
    }
    napi_get_value_double(env, prop(env, argv[0], "periodMs"), &period_ms);
    if (!(period_ms >= 0)) {
        throw_flux(env, FLUX_RESULT_INVALID_PERIOD, "periodMs must be a positive number");
        return NULL;
    }
    NAPI_OK(env, napi_get_typedarray_info(env, argv[3], &type, &out_len, &data, NULL, NULL));
    if (type != napi_float64_array || out_len < 6) {
        napi_throw_type_error(env, NULL, "flux: out must be a Float64Array(6)");
        return NULL;
    }
    prefix = string_prop(env, argv[0], "prefix", &ok);
    if (!ok) return NULL;
    clock = unwrap(env, argv[1]);
    redis = unwrap(env, argv[2]);
    shared = argc >= 5 ? unwrap(env, argv[4]) : NULL;
    memset(&o, 0, sizeof o);
    o.requests = requests;
    o.period_ns = (uint64_t)(period_ms * NS_PER_MS);
    o.burst = burst;
    o.algorithm = (uint32_t)algorithm;
    o.max_keys = (size_t)max_keys;
    o.clock = clock != NULL ? clock->clock : NULL;
    o.prefix = prefix;
    box = calloc(1, sizeof *box);
    if (box == NULL) {
        free(prefix);
        return NULL;
    }
    if (shared != NULL) {
        r = flux_limiter_new_shared(&o, shared->shared, &box->limiter);
    } else if (redis != NULL) {
        r = flux_limiter_new_redis(&o, redis->redis, &box->limiter);
    } else {
        r = flux_limiter_new(&o, &box->limiter);
    }
    free(prefix);
    if (r != FLUX_RESULT_OK) {
        free(box);
        throw_flux(env, r, NULL);
        return NULL;
    }
    box->out = data;
    NAPI_OK(env, napi_create_reference(env, argv[3], 1, &box->out_ref));
    NAPI_OK(env, napi_create_external(env, box, limiter_finalize, NULL, &ext));
    return ext;
}

/* A keyed call that takes a cost and writes a decision: flux_limiter_hit or _refund. */
typedef flux_result (*costed_call)(const flux_limiter *, const char *, size_t, uint64_t,
                                   flux_decision *);

/* call(limiter, key, cost) -> allowed (the decision is in the limiter's Float64Array).
   Inlined into hit and refund, so the call is direct. */
static inline napi_value costed(napi_env env, napi_callback_info info, costed_call call) {
    size_t argc = 3, len;
    napi_value argv[3], result;
    char stack[256], *heap;
    const char *key;
    uint64_t cost;
    limiter_box *box;
    flux_decision d;
    flux_result r;
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    box = unwrap(env, argv[0]);
    if (!get_u64(env, argv[2], &cost)) return NULL;
    key = get_key(env, argv[1], stack, sizeof stack, &len, &heap);
    if (key == NULL) return NULL;
    r = call(box != NULL ? box->limiter : NULL, key, len, cost, &d);
    free(heap);
    if (r != FLUX_RESULT_OK) {
        throw_flux(env, r, NULL);
        return NULL;
    }
    write_decision(&d, box->out);
    NAPI_OK(env, napi_get_boolean(env, d.allowed, &result));
    return result;
}

/* hit(limiter, key, cost) -> allowed */
static napi_value hit(napi_env env, napi_callback_info info) {
    return costed(env, info, flux_limiter_hit);
}

/* refund(limiter, key, cost) -> allowed (what a hit of cost 1 would see next) */
static napi_value refund(napi_env env, napi_callback_info info) {
    return costed(env, info, flux_limiter_refund);
}

/* peek(limiter, key) -> allowed */
static napi_value peek(napi_env env, napi_callback_info info) {
    size_t argc = 2, len;
    napi_value argv[2], result;
    char stack[256], *heap;
    const char *key;
    limiter_box *box;
    flux_decision d;
    flux_result r;
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    box = unwrap(env, argv[0]);
    key = get_key(env, argv[1], stack, sizeof stack, &len, &heap);
    if (key == NULL) return NULL;
    r = flux_limiter_peek(box != NULL ? box->limiter : NULL, key, len, &d);
    free(heap);
    if (r != FLUX_RESULT_OK) {
        throw_flux(env, r, NULL);
        return NULL;
    }
    write_decision(&d, box->out);
    NAPI_OK(env, napi_get_boolean(env, d.allowed, &result));
    return result;
}

/* reset(limiter, key) */
static napi_value reset(napi_env env, napi_callback_info info) {
    size_t argc = 2, len;
    napi_value argv[2];
    char stack[256], *heap;
    const char *key;
    limiter_box *box;
    flux_result r;
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    box = unwrap(env, argv[0]);
    key = get_key(env, argv[1], stack, sizeof stack, &len, &heap);
    if (key == NULL) return NULL;
    r = flux_limiter_reset(box != NULL ? box->limiter : NULL, key, len);
    free(heap);
    if (r != FLUX_RESULT_OK) throw_flux(env, r, NULL);
    return NULL;
}

/* hitMany(limiters[], keys[], costs[], out: Float64Array(6 * n)) -> allowed */
static napi_value hit_many(napi_env env, napi_callback_info info) {
    size_t argc = 4, out_len = 0, i;
    napi_value argv[4], result;
    uint32_t n = 0;
    flux_hit *hits = NULL;
    flux_decision *decisions = NULL;
    char **keys = NULL;
    napi_typedarray_type type;
    void *data = NULL;
    bool allowed = false, failed = true;
    flux_result r;
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    NAPI_OK(env, napi_get_array_length(env, argv[0], &n));
    NAPI_OK(env, napi_get_typedarray_info(env, argv[3], &type, &out_len, &data, NULL, NULL));
    if (type != napi_float64_array || out_len < 6 * (size_t)n) {
        napi_throw_type_error(env, NULL, "flux: out must be a Float64Array(6 * n)");
        return NULL;
    }
    hits = calloc(n + 1, sizeof *hits);
    decisions = calloc(n + 1, sizeof *decisions);
    keys = calloc(n + 1, sizeof *keys);
    if (hits == NULL || decisions == NULL || keys == NULL) goto done;
    for (i = 0; i < n; i++) {
        napi_value l, k, c;
        limiter_box *box;
        size_t len = 0;
        napi_get_element(env, argv[0], (uint32_t)i, &l);
        napi_get_element(env, argv[1], (uint32_t)i, &k);
        napi_get_element(env, argv[2], (uint32_t)i, &c);
        box = unwrap(env, l);
        if (napi_get_value_string_utf8(env, k, NULL, 0, &len) != napi_ok) {
            napi_throw_type_error(env, NULL, "flux: a key must be a string");
            goto done;
        }
        keys[i] = malloc(len + 1);
        if (keys[i] == NULL) goto done;
        napi_get_value_string_utf8(env, k, keys[i], len + 1, &len);
        hits[i].limiter = box != NULL ? box->limiter : NULL;
        hits[i].key = keys[i];
        hits[i].key_len = len;
        if (!get_u64(env, c, &hits[i].cost)) goto done;
    }
    r = flux_hit_many(hits, n, decisions, &allowed);
    if (r != FLUX_RESULT_OK) {
        throw_flux(env, r, NULL);
        goto done;
    }
    for (i = 0; i < n; i++) write_decision(&decisions[i], (double *)data + 6 * i);
    failed = false;
done:
    if (keys != NULL) {
        for (i = 0; i < n; i++) free(keys[i]);
    }
    free(keys);
    free(hits);
    free(decisions);
    if (failed) return NULL;
    NAPI_OK(env, napi_get_boolean(env, allowed, &result));
    return result;
}

/* ---- async: hit, peek, reset and refund on the libuv thread pool (for Redis: no blocked loop) ---- */

enum { OP_HIT, OP_PEEK, OP_RESET, OP_REFUND };

typedef struct {
    napi_async_work work;
    napi_deferred deferred;
    napi_ref limiter_ref; /* keeps the limiter's external (and so its box) alive */
    limiter_box *box;
    int op;
    char *key;
    size_t key_len;
    uint64_t cost;
    flux_decision decision;
    flux_result result;
    char *error; /* flux_last_error() of the worker thread, copied there */
} async_call;

static void async_execute(napi_env env, void *data) {
    async_call *c = data;
    (void)env;
    switch (c->op) {
    case OP_HIT:
        c->result = flux_limiter_hit(c->box->limiter, c->key, c->key_len, c->cost, &c->decision);
        break;
    case OP_PEEK:
        c->result = flux_limiter_peek(c->box->limiter, c->key, c->key_len, &c->decision);
        break;
    case OP_REFUND:
        c->result =
            flux_limiter_refund(c->box->limiter, c->key, c->key_len, c->cost, &c->decision);
        break;
    default:
        c->result = flux_limiter_reset(c->box->limiter, c->key, c->key_len);
        break;
    }
    /* The last error is per thread: read it on this one. A fail-open decision records one too. */
    if (c->result != FLUX_RESULT_OK) {
        const char *e = flux_last_error();
        c->error = malloc(strlen(e) + 1);
        if (c->error != NULL) memcpy(c->error, e, strlen(e) + 1);
    }
}

static napi_value decision_object(napi_env env, const flux_decision *d) {
    static const char *const sources[] = {"memory", "redis", "deny_cache", "fail_open"};
    napi_value obj, v;
    napi_create_object(env, &obj);
    napi_get_boolean(env, d->allowed, &v);
    napi_set_named_property(env, obj, "allowed", v);
    napi_create_double(env, (double)d->limit, &v);
    napi_set_named_property(env, obj, "limit", v);
    napi_create_double(env, (double)d->remaining, &v);
    napi_set_named_property(env, obj, "remaining", v);
    napi_create_double(env, (double)d->reset_after_ns / NS_PER_MS, &v);
    napi_set_named_property(env, obj, "resetAfterMs", v);
    napi_create_double(env, (double)d->retry_after_ns / NS_PER_MS, &v);
    napi_set_named_property(env, obj, "retryAfterMs", v);
    napi_create_string_utf8(env, (unsigned)d->source < 4 ? sources[d->source] : "unknown",
                            NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, obj, "source", v);
    return obj;
}

static void async_complete(napi_env env, napi_status status, void *data) {
    async_call *c = data;
    napi_value value = NULL;
    if (status == napi_ok && c->result == FLUX_RESULT_OK) {
        if (c->op == OP_RESET) {
            napi_get_undefined(env, &value);
        } else {
            value = decision_object(env, &c->decision);
        }
        napi_resolve_deferred(env, c->deferred, value);
    } else {
        /* Build the FluxError by throwing it, then take it back to reject the promise. */
        flux_result r = status == napi_ok ? c->result : FLUX_RESULT_PANIC;
        throw_flux(env, r, c->error != NULL ? c->error : flux_result_message((int)r));
        napi_get_and_clear_last_exception(env, &value);
        napi_reject_deferred(env, c->deferred, value);
    }
    if (--c->box->pending == 0 && c->box->close_requested) {
        flux_limiter_free(c->box->limiter);
        c->box->limiter = NULL;
        c->box->close_requested = false;
    }
    napi_delete_reference(env, c->limiter_ref);
    napi_delete_async_work(env, c->work);
    free(c->key);
    free(c->error);
    free(c);
}

/* hitAsync(limiter, key, cost) / peekAsync(limiter, key) / resetAsync(limiter, key) /
   refundAsync(limiter, key, cost) -> Promise */
static napi_value start_async(napi_env env, napi_callback_info info, int op) {
    size_t argc = 3, len = 0;
    napi_value argv[3], promise, name;
    async_call *c;
    limiter_box *box;
    uint64_t cost = 1;
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    box = unwrap(env, argv[0]);
    if (box == NULL || box->limiter == NULL || box->close_requested) {
        throw_flux(env, FLUX_RESULT_NULL_ARGUMENT, "the limiter is closed");
        return NULL;
    }
    if ((op == OP_HIT || op == OP_REFUND) && !get_u64(env, argv[2], &cost)) return NULL;
    if (napi_get_value_string_utf8(env, argv[1], NULL, 0, &len) != napi_ok) {
        napi_throw_type_error(env, NULL, "flux: a key must be a string");
        return NULL;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL || (c->key = malloc(len + 1)) == NULL) {
        free(c);
        napi_throw_error(env, NULL, "flux: out of memory");
        return NULL;
    }
    napi_get_value_string_utf8(env, argv[1], c->key, len + 1, &c->key_len);
    c->box = box;
    c->op = op;
    c->cost = cost;
    NAPI_OK(env, napi_create_reference(env, argv[0], 1, &c->limiter_ref));
    NAPI_OK(env, napi_create_promise(env, &c->deferred, &promise));
    NAPI_OK(env, napi_create_string_utf8(env, "flux", NAPI_AUTO_LENGTH, &name));
    NAPI_OK(env, napi_create_async_work(env, NULL, name, async_execute, async_complete, c,
                                        &c->work));
    NAPI_OK(env, napi_queue_async_work(env, c->work));
    box->pending++;
    return promise;
}

static napi_value hit_async(napi_env env, napi_callback_info info) {
    return start_async(env, info, OP_HIT);
}
static napi_value peek_async(napi_env env, napi_callback_info info) {
    return start_async(env, info, OP_PEEK);
}
static napi_value reset_async(napi_env env, napi_callback_info info) {
    return start_async(env, info, OP_RESET);
}
static napi_value refund_async(napi_env env, napi_callback_info info) {
    return start_async(env, info, OP_REFUND);
}

/* close(handle): frees the C handle now; later calls fail with FLUX_NULL_ARGUMENT. */
static napi_value close_handle(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    int32_t kind = 0;
    void *data;
    NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    data = unwrap(env, argv[0]);
    NAPI_OK(env, napi_get_value_int32(env, argv[1], &kind));
    if (data == NULL) return NULL;
    if (kind == 0) {
        limiter_box *box = data;
        if (box->pending > 0) {
            box->close_requested = true; /* freed by the last async completion */
        } else {
            flux_limiter_free(box->limiter);
            box->limiter = NULL;
        }
    } else if (kind == 1) {
        flux_redis_free(((redis_box *)data)->redis);
        ((redis_box *)data)->redis = NULL;
    } else if (kind == 3) {
        flux_shared_free(((shared_box *)data)->shared);
        ((shared_box *)data)->shared = NULL;
    } else {
        flux_clock_free(((clock_box *)data)->clock);
        ((clock_box *)data)->clock = NULL;
    }
    return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
    napi_property_descriptor props[] = {
        {"version", NULL, version, NULL, NULL, NULL, napi_default, NULL},
        {"setErrorClass", NULL, set_error_class, NULL, NULL, NULL, napi_default, NULL},
        {"clockNew", NULL, clock_new, NULL, NULL, NULL, napi_default, NULL},
        {"clockAdvance", NULL, clock_advance, NULL, NULL, NULL, napi_default, NULL},
        {"redisNew", NULL, redis_new, NULL, NULL, NULL, napi_default, NULL},
        {"redisPing", NULL, redis_ping, NULL, NULL, NULL, napi_default, NULL},
        {"sharedOpen", NULL, shared_open, NULL, NULL, NULL, napi_default, NULL},
        {"limiterNew", NULL, limiter_new, NULL, NULL, NULL, napi_default, NULL},
        {"hit", NULL, hit, NULL, NULL, NULL, napi_default, NULL},
        {"peek", NULL, peek, NULL, NULL, NULL, napi_default, NULL},
        {"reset", NULL, reset, NULL, NULL, NULL, napi_default, NULL},
        {"refund", NULL, refund, NULL, NULL, NULL, napi_default, NULL},
        {"hitMany", NULL, hit_many, NULL, NULL, NULL, napi_default, NULL},
        {"close", NULL, close_handle, NULL, NULL, NULL, napi_default, NULL},
        {"hitAsync", NULL, hit_async, NULL, NULL, NULL, napi_default, NULL},
        {"peekAsync", NULL, peek_async, NULL, NULL, NULL, napi_default, NULL},
        {"resetAsync", NULL, reset_async, NULL, NULL, NULL, napi_default, NULL},
        {"refundAsync", NULL, refund_async, NULL, NULL, NULL, napi_default, NULL},
    };
    if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) {
        return NULL;
    }
    return exports;
}

#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME flux /* what node-gyp would define; we build without it */
#endif
NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
