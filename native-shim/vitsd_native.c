/*
 * vitsd native shim: the few system calls Node cannot make by itself.
 *
 *  - mmap/munmap/mprotect/msync of the VMM's shared-memory files as ArrayBuffers that alias
 *    the pages. munmap() detaches the ArrayBuffer first, so every stale view becomes length 0
 *    and a use-after-unmap is a harmless no-op instead of a SIGSEGV.
 *  - memfd_create, eventfd and 8-byte eventfd read/write.
 *  - UNIX stream sockets with SCM_RIGHTS (Node's `net` cannot send or receive fds).
 *  - uv_poll_t watchers on the Node event loop, so socket input is handled without a thread hop.
 *
 * The JS-facing interface and its error conventions are documented in src/native/binding.ts.
 * Plain C + Node-API only (ABI-stable); built by scripts/build-native.mjs with the system cc.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Node 20 implements external ArrayBuffers as external Buffers: at most 4 GiB. Stay a page
 * below it so a failure of napi_create_external_arraybuffer (which would call our finalizer
 * behind our back) cannot be triggered by the length. */
#define MAX_MAP_LENGTH (4294967296.0 - 4096.0)
/* Linux SCM_MAX_FD: the most fds one SCM_RIGHTS message can carry. */
#define SCM_MAX_FDS 253
#define MAX_SEND_FDS SCM_MAX_FDS

/* ---------------------------------------------------------------------------------------- */
/* errors                                                                                    */

static const char *errno_name(int e) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *n = strerrorname_np(e);
  if (n != NULL) return n;
#endif
  switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EINVAL: return "EINVAL";
    case ENFILE: return "ENFILE";
    case EMFILE: return "EMFILE";
    case ENOSPC: return "ENOSPC";
    case EPIPE: return "EPIPE";
    case ERANGE: return "ERANGE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case EPROTO: return "EPROTO";
    case ENOTSOCK: return "ENOTSOCK";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EADDRINUSE: return "EADDRINUSE";
    case ECONNRESET: return "ECONNRESET";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EOVERFLOW: return "EOVERFLOW";
    default: return "EUNKNOWN";
  }
}

/* Throws Error("<CODE>: <strerror>, <syscall>[ <detail>]") with code, errno (positive) and
 * syscall properties. Always returns NULL so callers can `return throw_errno(...)`. */
static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *detail) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return NULL;
  char msg[512];
  snprintf(msg, sizeof msg, "%s: %s, %s%s%s", errno_name(err), strerror(err), syscall,
           detail != NULL ? " " : "", detail != NULL ? detail : "");
  napi_value code, message, error, num, sys;
  if (napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message) != napi_ok ||
      napi_create_error(env, code, message, &error) != napi_ok) {
    napi_throw_error(env, errno_name(err), msg);
    return NULL;
  }
  if (napi_create_int32(env, err, &num) == napi_ok) napi_set_named_property(env, error, "errno", num);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sys) == napi_ok)
    napi_set_named_property(env, error, "syscall", sys);
  napi_throw(env, error);
  return NULL;
}

static napi_value throw_type(napi_env env, const char *msg) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

static napi_value throw_range(napi_env env, const char *msg) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
  return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* argument helpers                                                                          */

#define GET_ARGS(n)                                                                         \
  size_t argc = (n);                                                                        \
  napi_value argv[(n) > 0 ? (n) : 1];                                                       \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;

static bool arg_present(napi_env env, size_t argc, napi_value *argv, size_t i) {
  if (i >= argc) return false;
  napi_valuetype t;
  if (napi_typeof(env, argv[i], &t) != napi_ok) return false;
  return t != napi_undefined && t != napi_null;
}

/* An int32 argument; false (with a TypeError thrown) if it is not a number. */
static bool arg_int32(napi_env env, size_t argc, napi_value *argv, size_t i, const char *name, int32_t *out) {
  if (i >= argc || napi_get_value_int32(env, argv[i], out) != napi_ok) {
    char msg[128];
    snprintf(msg, sizeof msg, "argument '%s' must be a number", name);
    throw_type(env, msg);
    return false;
  }
  return true;
}

/* An integer in [0, max] given as a JS number; RangeError otherwise. */
static bool arg_uint(napi_env env, size_t argc, napi_value *argv, size_t i, const char *name, double max, uint64_t *out) {
  double d;
  char msg[160];
  if (i >= argc || napi_get_value_double(env, argv[i], &d) != napi_ok) {
    snprintf(msg, sizeof msg, "argument '%s' must be a number", name);
    throw_type(env, msg);
    return false;
  }
  if (!(d >= 0) || d > max || d != (double)(uint64_t)d) {
    snprintf(msg, sizeof msg, "argument '%s' must be an integer in [0, %.0f], got %g", name, max, d);
    throw_range(env, msg);
    return false;
  }
  *out = (uint64_t)d;
  return true;
}

/* A string argument copied into buf (NUL-terminated); false if not a string or too long. */
static bool arg_string(napi_env env, size_t argc, napi_value *argv, size_t i, const char *name, char *buf, size_t bufsize, size_t *len) {
  size_t n = 0;
  char msg[128];
  if (i >= argc || napi_get_value_string_utf8(env, argv[i], NULL, 0, &n) != napi_ok) {
    snprintf(msg, sizeof msg, "argument '%s' must be a string", name);
    throw_type(env, msg);
    return false;
  }
  if (n + 1 > bufsize) {
    throw_errno(env, ENAMETOOLONG, name, NULL);
    return false;
  }
  napi_get_value_string_utf8(env, argv[i], buf, bufsize, &n);
  if (strlen(buf) != n) { /* embedded NUL */
    throw_errno(env, EINVAL, name, "contains a NUL byte");
    return false;
  }
  if (len != NULL) *len = n;
  return true;
}

/* A Uint8Array argument (Buffer included) and the [offset, offset+length) window into it. */
static bool arg_u8_window(napi_env env, size_t argc, napi_value *argv, size_t i, uint8_t **data, size_t off_i, size_t len_i, size_t *out_len) {
  bool is_ta = false;
  napi_typedarray_type type;
  size_t length = 0;
  void *base = NULL;
  if (i >= argc || napi_is_typedarray(env, argv[i], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[i], &type, &length, &base, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    throw_type(env, "argument 'buf' must be a Uint8Array");
    return false;
  }
  uint64_t off, len;
  if (!arg_uint(env, argc, argv, off_i, "offset", 9007199254740991.0, &off)) return false;
  if (!arg_uint(env, argc, argv, len_i, "length", 9007199254740991.0, &len)) return false;
  if (off > length || len > length - off) {
    throw_range(env, "offset/length outside the buffer");
    return false;
  }
  *data = (uint8_t *)base + off;
  *out_len = (size_t)len;
  return true;
}

static napi_value make_int(napi_env env, int64_t v) {
  napi_value r;
  napi_create_int64(env, v, &r);
  return r;
}

static napi_value make_undefined(napi_env env) {
  napi_value r;
  napi_get_undefined(env, &r);
  return r;
}

/* ---------------------------------------------------------------------------------------- */
/* type tags: only objects this addon made are accepted back                                 */

static const napi_type_tag MAPPING_TAG = {0x7669747364206d61ULL, 0x7070696e67000001ULL};
static const napi_type_tag POLL_TAG = {0x766974736420706fULL, 0x6c6c000000000001ULL};

static bool has_tag(napi_env env, napi_value v, const napi_type_tag *tag) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || (t != napi_object && t != napi_external)) return false;
  bool ok = false;
  if (napi_check_object_type_tag(env, v, tag, &ok) != napi_ok) return false;
  return ok;
}

/* ---------------------------------------------------------------------------------------- */
/* memory mappings                                                                           */

/* The finalize hint of a mapping's ArrayBuffer. Freed only by the finalizer (Node may call it
 * itself when the ArrayBuffer cannot be created, so nobody else may free it). */
typedef struct mapping {
  void *addr;
  size_t len;
  int unmapped; /* munmap() already released the pages: the finalizer must not unmap again */
} mapping;

static void mapping_finalize(napi_env env, void *data, void *hint) {
  mapping *m = (mapping *)hint;
  if (m == NULL) return;
  if (!m->unmapped) munmap(m->addr, m->len);
  free(m);
}

/* The live mapping behind an ArrayBuffer made by mmap(), or NULL (exception thrown). */
static mapping *get_live_mapping(napi_env env, napi_value ab, const char *syscall) {
  if (!has_tag(env, ab, &MAPPING_TAG)) {
    throw_errno(env, EINVAL, syscall, "(argument is not an ArrayBuffer returned by mmap())");
    return NULL;
  }
  void *p = NULL;
  if (napi_unwrap(env, ab, &p) != napi_ok || p == NULL) {
    throw_errno(env, EINVAL, syscall, "(the mapping was unmapped)");
    return NULL;
  }
  return (mapping *)p;
}

static napi_value js_mmap(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  int32_t fd, prot;
  uint64_t length, offset;
  double dlen;
  if (!arg_int32(env, argc, argv, 0, "fd", &fd)) return NULL;
  if (argc < 2 || napi_get_value_double(env, argv[1], &dlen) != napi_ok) return throw_type(env, "argument 'length' must be a number");
  if (!(dlen > 0) || dlen > MAX_MAP_LENGTH || dlen != (double)(uint64_t)dlen)
    return throw_errno(env, EINVAL, "mmap", "(length must be an integer in [1, 2^32 - 4096])");
  length = (uint64_t)dlen;
  if (!arg_uint(env, argc, argv, 2, "offset", 9007199254740991.0, &offset)) return NULL;
  if (!arg_int32(env, argc, argv, 3, "prot", &prot)) return NULL;
  long page = sysconf(_SC_PAGESIZE);
  if (offset % (uint64_t)page != 0) return throw_errno(env, EINVAL, "mmap", "(offset not page aligned)");
  if (offset > (uint64_t)INT64_MAX - length) return throw_errno(env, EOVERFLOW, "mmap", NULL);

  void *addr = mmap(NULL, (size_t)length, prot, MAP_SHARED, fd, (off_t)offset);
  if (addr == MAP_FAILED) return throw_errno(env, errno, "mmap", NULL);
  mapping *m = (mapping *)malloc(sizeof *m);
  if (m == NULL) {
    munmap(addr, (size_t)length);
    return throw_errno(env, ENOMEM, "mmap", NULL);
  }
  m->addr = addr;
  m->len = (size_t)length;
  m->unmapped = 0;

  napi_value ab;
  if (napi_create_external_arraybuffer(env, addr, (size_t)length, mapping_finalize, m, &ab) != napi_ok) {
    /* Node has already run (or will run) mapping_finalize(m): it unmaps and frees. Touch
     * nothing here, or it is a double free. */
    return throw_errno(env, ENOMEM, "mmap", "(cannot create the external ArrayBuffer)");
  }
  /* From here on the ArrayBuffer owns the mapping; on error, GC releases it. */
  if (napi_type_tag_object(env, ab, &MAPPING_TAG) != napi_ok ||
      napi_wrap(env, ab, m, NULL, NULL, NULL) != napi_ok) {
    return throw_errno(env, ENOMEM, "mmap", "(cannot tag the ArrayBuffer)");
  }
  return ab;
}

static napi_value js_munmap(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  if (argc < 1 || !has_tag(env, argv[0], &MAPPING_TAG))
    return throw_errno(env, EINVAL, "munmap", "(argument is not an ArrayBuffer returned by mmap())");
  bool detached = false;
  if (napi_is_detached_arraybuffer(env, argv[0], &detached) != napi_ok) return NULL;
  if (detached) return make_undefined(env); /* idempotent */
  void *p = NULL;
  if (napi_remove_wrap(env, argv[0], &p) != napi_ok || p == NULL) return make_undefined(env);
  mapping *m = (mapping *)p;
  void *addr = m->addr;
  size_t len = m->len;
  m->unmapped = 1;
  /* Detach first: afterwards no JS view can reach the pages. Detaching may release the
   * backing store and run mapping_finalize(m) (which frees m), so m is not touched again. */
  if (napi_detach_arraybuffer(env, argv[0]) != napi_ok) {
    m->unmapped = 0;
    napi_wrap(env, argv[0], m, NULL, NULL, NULL);
    return throw_errno(env, EBUSY, "munmap", "(the ArrayBuffer cannot be detached; pages left mapped)");
  }
  if (munmap(addr, len) != 0) return throw_errno(env, errno, "munmap", NULL);
  return make_undefined(env);
}

/* Optional [offset, offset+length) inside a mapping; offset page aligned. */
static bool mapping_range(napi_env env, size_t argc, napi_value *argv, size_t off_i, size_t len_i, const mapping *m,
                          size_t *off_out, size_t *len_out, const char *syscall) {
  uint64_t off = 0, len;
  if (arg_present(env, argc, argv, off_i) && !arg_uint(env, argc, argv, off_i, "offset", (double)m->len, &off)) return false;
  len = m->len - off;
  if (arg_present(env, argc, argv, len_i) && !arg_uint(env, argc, argv, len_i, "length", (double)(m->len - off), &len))
    return false;
  if (off % (uint64_t)sysconf(_SC_PAGESIZE) != 0) {
    throw_errno(env, EINVAL, syscall, "(offset not page aligned)");
    return false;
  }
  *off_out = (size_t)off;
  *len_out = (size_t)len;
  return true;
}

static napi_value js_mprotect(napi_env env, napi_callback_info info) {
  GET_ARGS(4);
  if (argc < 1) return throw_type(env, "mprotect(buffer, prot[, offset, length])");
  mapping *m = get_live_mapping(env, argv[0], "mprotect");
  if (m == NULL) return NULL;
  int32_t prot;
  if (!arg_int32(env, argc, argv, 1, "prot", &prot)) return NULL;
  size_t off, len;
  if (!mapping_range(env, argc, argv, 2, 3, m, &off, &len, "mprotect")) return NULL;
  if (len > 0 && mprotect((char *)m->addr + off, len, prot) != 0) return throw_errno(env, errno, "mprotect", NULL);
  return make_undefined(env);
}

static napi_value js_msync(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  if (argc < 1) return throw_type(env, "msync(buffer[, flags])");
  mapping *m = get_live_mapping(env, argv[0], "msync");
  if (m == NULL) return NULL;
  int32_t flags = MS_SYNC;
  if (arg_present(env, argc, argv, 1) && !arg_int32(env, argc, argv, 1, "flags", &flags)) return NULL;
  if (msync(m->addr, m->len, flags) != 0) return throw_errno(env, errno, "msync", NULL);
  return make_undefined(env);
}

/* ---------------------------------------------------------------------------------------- */
/* fds: memfd, eventfd, close                                                                 */

static napi_value js_memfd_create(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  char name[250];
  int32_t flags;
  if (!arg_string(env, argc, argv, 0, "name", name, sizeof name, NULL)) return NULL;
  if (!arg_int32(env, argc, argv, 1, "flags", &flags)) return NULL;
  int fd = memfd_create(name, (unsigned)flags);
  if (fd < 0) return throw_errno(env, errno, "memfd_create", name);
  return make_int(env, fd);
}

static napi_value js_eventfd(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  uint64_t initval;
  int32_t flags = EFD_NONBLOCK | EFD_CLOEXEC;
  if (!arg_uint(env, argc, argv, 0, "initval", 4294967295.0, &initval)) return NULL;
  if (arg_present(env, argc, argv, 1) && !arg_int32(env, argc, argv, 1, "flags", &flags)) return NULL;
  int fd = eventfd((unsigned)initval, flags);
  if (fd < 0) return throw_errno(env, errno, "eventfd", NULL);
  return make_int(env, fd);
}

static napi_value js_write_u64(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int32_t fd;
  double d;
  if (!arg_int32(env, argc, argv, 0, "fd", &fd)) return NULL;
  if (argc < 2 || napi_get_value_double(env, argv[1], &d) != napi_ok) return throw_type(env, "argument 'value' must be a number");
  if (!(d >= 0) || d >= 18446744073709551616.0 || d != (double)(uint64_t)d) return make_int(env, -EINVAL);
  uint64_t v = (uint64_t)d;
  ssize_t n;
  do n = write(fd, &v, sizeof v); while (n < 0 && errno == EINTR);
  return make_int(env, n < 0 ? -errno : n);
}

static napi_value js_read_u64(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t fd;
  if (!arg_int32(env, argc, argv, 0, "fd", &fd)) return NULL;
  uint64_t v = 0;
  ssize_t n;
  do n = read(fd, &v, sizeof v); while (n < 0 && errno == EINTR);
  if (n < 0) return make_int(env, -errno);
  if (n != (ssize_t)sizeof v) return make_int(env, -EIO);
  napi_value r;
  napi_create_double(env, (double)v, &r);
  return r;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t fd;
  if (!arg_int32(env, argc, argv, 0, "fd", &fd)) return NULL;
  /* On Linux the fd is released even when close() reports EINTR: never retry. */
  if (close(fd) != 0 && errno != EINTR) return throw_errno(env, errno, "close", NULL);
  return make_undefined(env);
}

static napi_value js_is_open(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t fd;
  if (!arg_int32(env, argc, argv, 0, "fd", &fd)) return NULL;
  napi_value r;
  napi_get_boolean(env, fd >= 0 && fcntl(fd, F_GETFD) >= 0, &r);
  return r;
}

/* O_NONBLOCK on or off (notify fds handed over by the VMM: a full pipe must not block the daemon). */
static napi_value js_set_non_blocking(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  int32_t fd;
  bool on;
  if (!arg_int32(env, argc, argv, 0, "fd", &fd)) return NULL;
  if (argc < 2 || napi_get_value_bool(env, argv[1], &on) != napi_ok) return throw_type(env, "argument 'on' must be a boolean");
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return throw_errno(env, errno, "fcntl", "(F_GETFL)");
  int wanted = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (wanted != flags && fcntl(fd, F_SETFL, wanted) != 0) return throw_errno(env, errno, "fcntl", "(F_SETFL)");
  return make_undefined(env);
}

/* ---------------------------------------------------------------------------------------- */
/* UNIX sockets                                                                              */

static bool unix_address(napi_env env, size_t argc, napi_value *argv, size_t i, struct sockaddr_un *sa, socklen_t *salen) {
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  size_t n;
  if (!arg_string(env, argc, argv, i, "path", sa->sun_path, sizeof sa->sun_path, &n)) return false;
  if (n == 0) {
    throw_errno(env, EINVAL, "bind", "(empty socket path)");
    return false;
  }
  *salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  return true;
}

static napi_value js_listen_unix(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  struct sockaddr_un sa;
  socklen_t salen;
  int32_t backlog, mode;
  if (!unix_address(env, argc, argv, 0, &sa, &salen)) return NULL;
  if (!arg_int32(env, argc, argv, 1, "backlog", &backlog)) return NULL;
  if (!arg_int32(env, argc, argv, 2, "mode", &mode)) return NULL;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket", NULL);
  if (bind(fd, (struct sockaddr *)&sa, salen) != 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, "bind", sa.sun_path);
  }
  /* The mode of a socket file comes from the umask at bind(); fchmod on the socket fd does not
   * reach the path on Linux. chmod the path before listen(): until then every connect() is
   * refused, so no peer can get in under the umask's mode. */
  if (chmod(sa.sun_path, (mode_t)mode) != 0) {
    int e = errno;
    unlink(sa.sun_path);
    close(fd);
    return throw_errno(env, e, "chmod", sa.sun_path);
  }
  if (listen(fd, backlog) != 0) {
    int e = errno;
    unlink(sa.sun_path);
    close(fd);
    return throw_errno(env, e, "listen", sa.sun_path);
  }
  return make_int(env, fd);
}

static napi_value js_accept(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  int32_t fd;
  if (!arg_int32(env, argc, argv, 0, "fd", &fd)) return NULL;
  int c;
  do c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); while (c < 0 && errno == EINTR);
  return make_int(env, c < 0 ? -errno : c);
}

static napi_value js_connect_unix(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  struct sockaddr_un sa;
  socklen_t salen;
  if (!unix_address(env, argc, argv, 0, &sa, &salen)) return NULL;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket", NULL);
  if (connect(fd, (struct sockaddr *)&sa, salen) != 0) {
    int e = errno;
    if (e == EINTR) {
      /* The connection proceeds in the background: wait for it and fetch its result. */
      struct pollfd p = {.fd = fd, .events = POLLOUT};
      int r;
      do r = poll(&p, 1, -1); while (r < 0 && errno == EINTR);
      socklen_t el = sizeof e;
      if (r < 0) e = errno;
      else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0) e = errno;
    }
    if (e != 0) {
      close(fd);
      return throw_errno(env, e, "connect", sa.sun_path);
    }
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, "fcntl", NULL);
  }
  return make_int(env, fd);
}

static napi_value js_socketpair(napi_env env, napi_callback_info info) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
    return throw_errno(env, errno, "socketpair", NULL);
  napi_value arr;
  if (napi_create_array_with_length(env, 2, &arr) != napi_ok ||
      napi_set_element(env, arr, 0, make_int(env, sv[0])) != napi_ok ||
      napi_set_element(env, arr, 1, make_int(env, sv[1])) != napi_ok) {
    close(sv[0]);
    close(sv[1]);
    return NULL;
  }
  return arr;
}

/* recvmsg(fd, buf, offset, length, fds: Int32Array) -> bytes | -errno.
 * fds[0] = number of fds received (or -1 when the control data was truncated), fds[1..n] =
 * the fds. Room for SCM_MAX_FDS fds in the control buffer so that whatever the peer sends
 * arrives and the excess can be closed here instead of leaking into the kernel's limbo. */
static napi_value js_recvmsg(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  int32_t fd;
  uint8_t *data;
  size_t len;
  if (!arg_int32(env, argc, argv, 0, "fd", &fd)) return NULL;
  if (!arg_u8_window(env, argc, argv, 1, &data, 2, 3, &len)) return NULL;
  bool is_ta = false;
  napi_typedarray_type type;
  size_t nfds_room = 0;
  void *fdsp = NULL;
  if (argc < 5 || napi_is_typedarray(env, argv[4], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[4], &type, &nfds_room, &fdsp, NULL, NULL) != napi_ok ||
      type != napi_int32_array || nfds_room < 1)
    return throw_type(env, "argument 'fds' must be an Int32Array of length >= 1");
  int32_t *fds = (int32_t *)fdsp;
  size_t capacity = nfds_room - 1;
  fds[0] = 0;
  if (len == 0) return make_int(env, -EINVAL); /* 0 would read as "peer closed" */

  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * SCM_MAX_FDS)];
  } control;
  struct iovec iov = {.iov_base = data, .iov_len = len};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.buf;
  msg.msg_controllen = sizeof control.buf;
  ssize_t n;
  do n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC); while (n < 0 && errno == EINTR);
  if (n < 0) return make_int(env, -errno);

  size_t kept = 0;
  bool truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0)) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char *p = CMSG_DATA(c);
    for (size_t k = 0; k < count; k++) {
      int rfd;
      memcpy(&rfd, p + k * sizeof(int), sizeof(int));
      if (!truncated && kept < capacity) fds[1 + kept++] = rfd;
      else close(rfd);
    }
  }
  if (truncated) {
    for (size_t k = 0; k < kept; k++) close(fds[1 + k]);
    fds[0] = -1;
  } else {
    fds[0] = (int32_t)kept;
  }
  return make_int(env, n);
}

/* sendmsg(fd, buf, offset, length, fds: number[] | null) -> bytes | -errno */
static napi_value js_sendmsg(napi_env env, napi_callback_info info) {
  GET_ARGS(5);
  int32_t fd;
  uint8_t *data;
  size_t len;
  if (!arg_int32(env, argc, argv, 0, "fd", &fd)) return NULL;
  if (!arg_u8_window(env, argc, argv, 1, &data, 2, 3, &len)) return NULL;

  int sendfds[MAX_SEND_FDS];
  uint32_t nfds = 0;
  if (arg_present(env, argc, argv, 4)) {
    bool is_array = false;
    if (napi_is_array(env, argv[4], &is_array) != napi_ok || !is_array)
      return throw_type(env, "argument 'fds' must be an array of numbers or null");
    napi_get_array_length(env, argv[4], &nfds);
    if (nfds > MAX_SEND_FDS) return throw_range(env, "too many fds for one message (max 253)");
    for (uint32_t k = 0; k < nfds; k++) {
      napi_value e;
      int32_t v;
      if (napi_get_element(env, argv[4], k, &e) != napi_ok || napi_get_value_int32(env, e, &v) != napi_ok)
        return throw_type(env, "argument 'fds' must be an array of numbers");
      sendfds[k] = v;
    }
  }

  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * MAX_SEND_FDS)];
  } control;
  struct iovec iov = {.iov_base = data, .iov_len = len};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > 0) {
    memset(control.buf, 0, CMSG_SPACE(sizeof(int) * nfds));
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), sendfds, sizeof(int) * nfds);
  }
  ssize_t n;
  do n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
  return make_int(env, n < 0 ? -errno : n);
}

/* ---------------------------------------------------------------------------------------- */
/* uv_poll_t watchers                                                                        */

typedef struct addon_state addon_state;

typedef struct poll_ctx {
  uv_poll_t handle; /* handle.data == this */
  napi_env env;
  addon_state *state;
  napi_ref callback;          /* released (NULL) once stopped */
  napi_async_context async;   /* released (NULL) once stopped */
  struct poll_ctx *prev, *next; /* in state->polls while active */
  int fd;
  int stopping;     /* pollStop() ran: no more callbacks, JS resources released or about to be */
  int in_callback;  /* inside the JS callback: release JS resources after it returns */
  int external_alive; /* the JS handle object still exists */
  int handle_closed;  /* libuv's close callback ran */
} poll_ctx;

struct addon_state {
  poll_ctx *polls; /* active watchers of this env (so env teardown can close them) */
};

/* ctx memory is freed when both libuv is done with the handle and the JS handle is gone, so
 * a late pollStop/pollUpdate on a stale handle object never touches freed memory. */
static void poll_maybe_free(poll_ctx *ctx) {
  if (ctx->handle_closed && !ctx->external_alive) free(ctx);
}

static void poll_on_close(uv_handle_t *h) {
  poll_ctx *ctx = (poll_ctx *)h->data;
  /* No Node-API here: during env teardown the env may already be gone. */
  ctx->handle_closed = 1;
  poll_maybe_free(ctx);
}

static void poll_external_finalize(napi_env env, void *data, void *hint) {
  poll_ctx *ctx = (poll_ctx *)data;
  ctx->external_alive = 0;
  poll_maybe_free(ctx);
}

static void poll_release_js(poll_ctx *ctx) {
  if (ctx->callback != NULL) {
    napi_delete_reference(ctx->env, ctx->callback);
    ctx->callback = NULL;
  }
  if (ctx->async != NULL) {
    napi_async_destroy(ctx->env, ctx->async);
    ctx->async = NULL;
  }
}

/* Stops the watcher and hands the handle to uv_close. Safe from inside its own callback:
 * libuv runs close callbacks only after the current poll callback has returned. */
static void poll_stop(poll_ctx *ctx) {
  if (ctx->stopping) return;
  ctx->stopping = 1;
  if (ctx->prev != NULL) ctx->prev->next = ctx->next;
  else if (ctx->state != NULL && ctx->state->polls == ctx) ctx->state->polls = ctx->next;
  if (ctx->next != NULL) ctx->next->prev = ctx->prev;
  ctx->prev = ctx->next = NULL;
  uv_poll_stop(&ctx->handle);
  uv_close((uv_handle_t *)&ctx->handle, poll_on_close);
  if (!ctx->in_callback) poll_release_js(ctx);
}

static void poll_on_event(uv_poll_t *h, int status, int events) {
  poll_ctx *ctx = (poll_ctx *)h->data;
  if (ctx->stopping || ctx->callback == NULL) return;
  napi_env env = ctx->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, args[2], result;
  if (napi_get_reference_value(env, ctx->callback, &cb) == napi_ok && cb != NULL &&
      napi_get_global(env, &recv) == napi_ok && napi_create_int32(env, status, &args[0]) == napi_ok &&
      napi_create_int32(env, events & (UV_READABLE | UV_WRITABLE), &args[1]) == napi_ok) {
    ctx->in_callback = 1;
    napi_status st = napi_make_callback(env, ctx->async, recv, cb, 2, args, &result);
    ctx->in_callback = 0;
    if (st != napi_ok) {
      /* No JS frame is below us: report a throw as an uncaught exception, as Node does for
       * its own handles. */
      bool pending = false;
      napi_value exc;
      if (napi_is_exception_pending(env, &pending) == napi_ok && pending &&
          napi_get_and_clear_last_exception(env, &exc) == napi_ok)
        napi_fatal_exception(env, exc);
    }
  }
  napi_close_handle_scope(env, scope);
  /* pollStop() from inside the callback deferred this: do it now the callback is over. */
  if (ctx->stopping) poll_release_js(ctx);
}

static poll_ctx *get_poll(napi_env env, size_t argc, napi_value *argv) {
  void *p = NULL;
  if (argc < 1 || !has_tag(env, argv[0], &POLL_TAG) || napi_get_value_external(env, argv[0], &p) != napi_ok || p == NULL) {
    throw_type(env, "argument 'handle' must be a handle returned by pollStart()");
    return NULL;
  }
  return (poll_ctx *)p;
}

static bool valid_events(napi_env env, int32_t events) {
  if ((events & ~(UV_READABLE | UV_WRITABLE)) != 0) {
    throw_range(env, "events must be a combination of 1 (readable) and 2 (writable)");
    return false;
  }
  return true;
}

static napi_value js_poll_start(napi_env env, napi_callback_info info) {
  GET_ARGS(3);
  int32_t fd, events;
  if (!arg_int32(env, argc, argv, 0, "fd", &fd)) return NULL;
  if (!arg_int32(env, argc, argv, 1, "events", &events)) return NULL;
  if (!valid_events(env, events)) return NULL;
  napi_valuetype t;
  if (argc < 3 || napi_typeof(env, argv[2], &t) != napi_ok || t != napi_function)
    return throw_type(env, "argument 'callback' must be a function");
  if (fd < 0) return throw_errno(env, EBADF, "pollStart", NULL);
  addon_state *state = NULL;
  if (napi_get_instance_data(env, (void **)&state) != napi_ok || state == NULL)
    return throw_errno(env, EINVAL, "pollStart", "(addon state missing)");
  /* libuv supports one poll handle per fd and loop; a second one corrupts its watcher table. */
  for (poll_ctx *c = state->polls; c != NULL; c = c->next)
    if (c->fd == fd) return throw_errno(env, EEXIST, "pollStart", "(fd is already watched)");

  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL)
    return throw_errno(env, EINVAL, "pollStart", "(no event loop)");
  poll_ctx *ctx = (poll_ctx *)calloc(1, sizeof *ctx);
  if (ctx == NULL) return throw_errno(env, ENOMEM, "pollStart", NULL);
  ctx->env = env;
  ctx->state = state;
  ctx->fd = fd;
  int r = uv_poll_init(loop, &ctx->handle, fd);
  if (r != 0) {
    free(ctx);
    return throw_errno(env, -r, "uv_poll_init", NULL);
  }
  ctx->handle.data = ctx;
  napi_value resource, name, ext;
  if (napi_create_object(env, &resource) != napi_ok ||
      napi_create_string_utf8(env, "vitsd:poll", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, resource, name, &ctx->async) != napi_ok ||
      napi_create_reference(env, argv[2], 1, &ctx->callback) != napi_ok) {
    poll_release_js(ctx);
    ctx->stopping = 1;
    uv_close((uv_handle_t *)&ctx->handle, poll_on_close); /* frees ctx (no external yet) */
    return throw_errno(env, ENOMEM, "pollStart", NULL);
  }
  if (events != 0) {
    r = uv_poll_start(&ctx->handle, events, poll_on_event);
    if (r != 0) {
      poll_release_js(ctx);
      ctx->stopping = 1;
      uv_close((uv_handle_t *)&ctx->handle, poll_on_close);
      return throw_errno(env, -r, "uv_poll_start", NULL);
    }
  }
  if (napi_create_external(env, ctx, poll_external_finalize, NULL, &ext) != napi_ok) {
    poll_release_js(ctx);
    ctx->stopping = 1;
    uv_close((uv_handle_t *)&ctx->handle, poll_on_close);
    return throw_errno(env, ENOMEM, "pollStart", NULL);
  }
  ctx->external_alive = 1;
  napi_type_tag_object(env, ext, &POLL_TAG);
  ctx->next = state->polls;
  if (state->polls != NULL) state->polls->prev = ctx;
  state->polls = ctx;
  return ext;
}

static napi_value js_poll_update(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  poll_ctx *ctx = get_poll(env, argc, argv);
  if (ctx == NULL) return NULL;
  int32_t events;
  if (!arg_int32(env, argc, argv, 1, "events", &events)) return NULL;
  if (!valid_events(env, events)) return NULL;
  if (ctx->stopping) return throw_errno(env, EBADF, "pollUpdate", "(handle was stopped)");
  int r = events == 0 ? uv_poll_stop(&ctx->handle) : uv_poll_start(&ctx->handle, events, poll_on_event);
  if (r != 0) return throw_errno(env, -r, "uv_poll_start", NULL);
  return make_undefined(env);
}

static napi_value js_poll_stop(napi_env env, napi_callback_info info) {
  GET_ARGS(1);
  poll_ctx *ctx = get_poll(env, argc, argv);
  if (ctx == NULL) return NULL;
  poll_stop(ctx);
  return make_undefined(env);
}

static napi_value js_poll_ref(napi_env env, napi_callback_info info) {
  GET_ARGS(2);
  poll_ctx *ctx = get_poll(env, argc, argv);
  if (ctx == NULL) return NULL;
  bool ref = true;
  if (argc < 2 || napi_get_value_bool(env, argv[1], &ref) != napi_ok) return throw_type(env, "argument 'ref' must be a boolean");
  if (!ctx->stopping) {
    if (ref) uv_ref((uv_handle_t *)&ctx->handle);
    else uv_unref((uv_handle_t *)&ctx->handle);
  }
  return make_undefined(env);
}

/* Env teardown (process exit, worker exit): close every watcher still open, or a worker's
 * loop would be closed with live handles (Node aborts on that). */
static void env_cleanup(void *arg) {
  addon_state *state = (addon_state *)arg;
  while (state->polls != NULL) poll_stop(state->polls);
}

static void state_finalize(napi_env env, void *data, void *hint) {
  free(data);
}

/* ---------------------------------------------------------------------------------------- */
/* module                                                                                    */

static napi_value Init(napi_env env, napi_value exports) {
  addon_state *state = (addon_state *)calloc(1, sizeof *state);
  if (state == NULL) return throw_errno(env, ENOMEM, "init", NULL);
  if (napi_set_instance_data(env, state, state_finalize, NULL) != napi_ok) {
    free(state);
    return NULL;
  }
  napi_add_env_cleanup_hook(env, env_cleanup, state);

  napi_value page;
  napi_create_int64(env, sysconf(_SC_PAGESIZE), &page);
  napi_property_descriptor props[] = {
      {"pageSize", NULL, NULL, NULL, NULL, page, napi_enumerable, NULL},
#define FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}
      FN("mmap", js_mmap),
      FN("munmap", js_munmap),
      FN("mprotect", js_mprotect),
      FN("msync", js_msync),
      FN("memfdCreate", js_memfd_create),
      FN("eventfd", js_eventfd),
      FN("writeU64", js_write_u64),
      FN("readU64", js_read_u64),
      FN("close", js_close),
      FN("isOpen", js_is_open),
      FN("setNonBlocking", js_set_non_blocking),
      FN("listenUnix", js_listen_unix),
      FN("accept", js_accept),
      FN("connectUnix", js_connect_unix),
      FN("socketpair", js_socketpair),
      FN("recvmsg", js_recvmsg),
      FN("sendmsg", js_sendmsg),
      FN("pollStart", js_poll_start),
      FN("pollUpdate", js_poll_update),
      FN("pollStop", js_poll_stop),
      FN("pollRef", js_poll_ref),
#undef FN
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
