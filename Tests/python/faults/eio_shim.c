/*
 * eio_shim.c: an LD_PRELOAD library that makes writes and syncs fail with EIO,
 * as a failing disk does, for the fault tests in Tests/python/test_faults.py.
 * The kernel here has no device-mapper (no dm-flakey or dm-error), so the
 * fault is injected in user space, in the calls the server and SQLite make.
 *
 *     cc -shared -fPIC -O2 -o eio_shim.so eio_shim.c -ldl -lpthread
 *     LD_PRELOAD=$PWD/eio_shim.so EIO_SHIM_CONTROL=/tmp/eio.on EIO_SHIM_PATHS=/data/ ich-server ...
 *
 * Environment:
 *   EIO_SHIM_CONTROL  a file; the fault is on only while it exists (unset: the
 *                     library does nothing). Its content, read again whenever
 *                     the file changes (replace it by rename to be sure), is a
 *                     list of words separated by white space:
 *                       write pwrite writev ftruncate fallocate fsync fdatasync read
 *                         the calls that fail (none named: all but `read`;
 *                         `pwrite` covers pwrite, pwrite64, pwritev and
 *                         pwritev2, `writev` is writev, `ftruncate` covers
 *                         ftruncate64, `fallocate` covers fallocate64 and
 *                         posix_fallocate, `read` covers read, pread, pread64,
 *                         readv and preadv; `all` is every call, reads too);
 *                       /some/path  a path prefix (replaces EIO_SHIM_PATHS);
 *                       count=N     fail only the first N matching calls.
 *   EIO_SHIM_PATHS    path prefixes, separated by ':'. A descriptor is affected
 *                     when the path it was opened with (readlink of
 *                     /proc/self/fd/N, " (deleted)" included) starts with one;
 *                     a prefix that ends in '/' also matches the directory
 *                     itself (fsync of a directory descriptor).
 *   EIO_SHIM_LOG      optional file: "loaded PID" when the library starts, then
 *                     one "CALL PATH" line per injected error.
 *
 * The call fails without doing anything (no byte is written, nothing synced).
 * Unlike a real disk error the page cache is untouched: earlier writes stay
 * readable and a later fsync that succeeds does persist them. This exercises
 * the program's error paths, not the kernel's behaviour after an I/O error.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum {
    CALL_WRITE = 1 << 0,
    CALL_PWRITE = 1 << 1,
    CALL_WRITEV = 1 << 2,
    CALL_FTRUNCATE = 1 << 3,
    CALL_FALLOCATE = 1 << 4,
    CALL_FSYNC = 1 << 5,
    CALL_FDATASYNC = 1 << 6,
    CALL_WRITES = (1 << 7) - 1, /* the default: every call that changes or syncs a file */
    CALL_READ = 1 << 7,
    CALL_ALL = (1 << 8) - 1,
};

static const struct {
    const char *name;
    int bit;
} call_names[] = {
    {"write", CALL_WRITE},         {"pwrite", CALL_PWRITE}, {"writev", CALL_WRITEV}, {"ftruncate", CALL_FTRUNCATE},
    {"fallocate", CALL_FALLOCATE}, {"fsync", CALL_FSYNC},   {"fdatasync", CALL_FDATASYNC}, {"read", CALL_READ},
    {"all", CALL_ALL},
};

#define MAX_PREFIXES 16
#define CONTROL_MAX 8192

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *control_path;
static const char *log_path;
static char env_paths[CONTROL_MAX];

/* The configuration read from the control file, guarded by `lock`. */
static struct stat control_seen;
static int have_config;
static int config_calls;
static char config_text[CONTROL_MAX];
static const char *config_prefixes[MAX_PREFIXES];
static size_t config_lengths[MAX_PREFIXES];
static int config_prefix_count;
static long config_remaining; /* -1: unlimited */

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off64_t);
static int (*real_fallocate)(int, int, off_t, off_t);
static int (*real_fallocate64)(int, int, off64_t, off64_t);
static int (*real_posix_fallocate)(int, off_t, off_t);
static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static ssize_t (*real_pread64)(int, void *, size_t, off64_t);
static ssize_t (*real_readv)(int, const struct iovec *, int);
static ssize_t (*real_preadv)(int, const struct iovec *, int, off_t);

#define RESOLVE(name)                                                                                                  \
    do {                                                                                                               \
        if (!real_##name) real_##name = dlsym(RTLD_NEXT, #name);                                                      \
    } while (0)

static void resolve_all(void) {
    RESOLVE(write);
    RESOLVE(pwrite);
    RESOLVE(pwrite64);
    RESOLVE(writev);
    RESOLVE(pwritev);
    RESOLVE(pwritev2);
    RESOLVE(fsync);
    RESOLVE(fdatasync);
    RESOLVE(ftruncate);
    RESOLVE(ftruncate64);
    RESOLVE(fallocate);
    RESOLVE(fallocate64);
    RESOLVE(posix_fallocate);
    RESOLVE(read);
    RESOLVE(pread);
    RESOLVE(pread64);
    RESOLVE(readv);
    RESOLVE(preadv);
}

static void log_line(const char *text) {
    if (!log_path) return;
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return;
    RESOLVE(write);
    size_t length = strlen(text);
    if (real_write) (void)real_write(fd, text, length); /* one write: O_APPEND keeps lines whole */
    close(fd);
}

__attribute__((constructor)) static void shim_init(void) {
    resolve_all();
    control_path = getenv("EIO_SHIM_CONTROL");
    log_path = getenv("EIO_SHIM_LOG");
    const char *paths = getenv("EIO_SHIM_PATHS");
    if (paths) snprintf(env_paths, sizeof env_paths, "%s", paths);
    char line[64];
    snprintf(line, sizeof line, "loaded %d\n", (int)getpid());
    log_line(line);
}

/* Splits `text` (modified in place) at any of `separators` into prefixes. */
static void add_prefixes(char *text, const char *separators) {
    char *save = NULL;
    for (char *word = strtok_r(text, separators, &save); word; word = strtok_r(NULL, separators, &save)) {
        if (word[0] == '/' && config_prefix_count < MAX_PREFIXES) {
            config_prefixes[config_prefix_count] = word;
            config_lengths[config_prefix_count] = strlen(word);
            config_prefix_count++;
        }
    }
}

/* Reads the control file; called with `lock` held. */
static void load_config(const struct stat *seen) {
    control_seen = *seen;
    have_config = 1;
    config_calls = 0;
    config_prefix_count = 0;
    config_remaining = -1;
    config_text[0] = '\0';
    int fd = open(control_path, O_RDONLY | O_CLOEXEC);
    RESOLVE(read); /* not read(): it is wrapped, and `lock` is held */
    ssize_t n = fd >= 0 && real_read ? real_read(fd, config_text, sizeof config_text - 1) : -1;
    if (fd >= 0) close(fd);
    config_text[n > 0 ? n : 0] = '\0';

    static char words[CONTROL_MAX];
    memcpy(words, config_text, sizeof words);
    char *save = NULL;
    int named_paths = 0;
    for (char *word = strtok_r(words, " \t\r\n", &save); word; word = strtok_r(NULL, " \t\r\n", &save)) {
        if (word[0] == '/') {
            named_paths = 1;
        } else if (strncmp(word, "count=", 6) == 0) {
            config_remaining = strtol(word + 6, NULL, 10);
        } else {
            for (size_t i = 0; i < sizeof call_names / sizeof call_names[0]; i++)
                if (strcmp(word, call_names[i].name) == 0) config_calls |= call_names[i].bit;
        }
    }
    if (config_calls == 0) config_calls = CALL_WRITES;
    /* Prefixes point into `prefix_text`, which lives as long as this configuration. */
    static char prefix_text[CONTROL_MAX];
    memcpy(prefix_text, named_paths ? config_text : env_paths, sizeof prefix_text);
    add_prefixes(prefix_text, named_paths ? " \t\r\n" : ":");
}

static int matches(const char *path) {
    size_t length = strlen(path);
    for (int i = 0; i < config_prefix_count; i++) {
        const char *prefix = config_prefixes[i];
        size_t n = config_lengths[i];
        if (length >= n && strncmp(path, prefix, n) == 0) return 1;
        /* "/a/dir/" also covers the directory "/a/dir" itself (and "/a/dir (deleted)"). */
        if (n > 1 && prefix[n - 1] == '/' && strncmp(path, prefix, n - 1) == 0 &&
            (path[n - 1] == '\0' || path[n - 1] == ' '))
            return 1;
    }
    return 0;
}

/* Whether this call on `fd` must fail; sets errno to EIO when it must. */
static int inject(int fd, int call, const char *name) {
    if (!control_path) return 0;
    struct stat seen;
    if (stat(control_path, &seen) != 0) return 0; /* the fault is off */
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = '\0';
    int fail = 0;
    pthread_mutex_lock(&lock);
    if (!have_config || seen.st_ino != control_seen.st_ino || seen.st_dev != control_seen.st_dev ||
        seen.st_size != control_seen.st_size || seen.st_mtim.tv_sec != control_seen.st_mtim.tv_sec ||
        seen.st_mtim.tv_nsec != control_seen.st_mtim.tv_nsec)
        load_config(&seen);
    if ((config_calls & call) && matches(path) && config_remaining != 0) {
        if (config_remaining > 0) config_remaining--;
        fail = 1;
    }
    pthread_mutex_unlock(&lock);
    if (!fail) return 0;
    char line[PATH_MAX + 64];
    snprintf(line, sizeof line, "%s %s\n", name, path);
    log_line(line);
    errno = EIO;
    return 1;
}

ssize_t write(int fd, const void *buffer, size_t count) {
    RESOLVE(write);
    if (inject(fd, CALL_WRITE, "write")) return -1;
    return real_write(fd, buffer, count);
}

ssize_t pwrite(int fd, const void *buffer, size_t count, off_t offset) {
    RESOLVE(pwrite);
    if (inject(fd, CALL_PWRITE, "pwrite")) return -1;
    return real_pwrite(fd, buffer, count, offset);
}

ssize_t pwrite64(int fd, const void *buffer, size_t count, off64_t offset) {
    RESOLVE(pwrite64);
    if (inject(fd, CALL_PWRITE, "pwrite64")) return -1;
    return real_pwrite64(fd, buffer, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int count) {
    RESOLVE(writev);
    if (inject(fd, CALL_WRITEV, "writev")) return -1;
    return real_writev(fd, iov, count);
}

ssize_t pwritev(int fd, const struct iovec *iov, int count, off_t offset) {
    RESOLVE(pwritev);
    if (inject(fd, CALL_PWRITE, "pwritev")) return -1;
    return real_pwritev(fd, iov, count, offset);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int count, off_t offset, int flags) {
    RESOLVE(pwritev2);
    if (inject(fd, CALL_PWRITE, "pwritev2")) return -1;
    return real_pwritev2(fd, iov, count, offset, flags);
}

int fsync(int fd) {
    RESOLVE(fsync);
    if (inject(fd, CALL_FSYNC, "fsync")) return -1;
    return real_fsync(fd);
}

int fdatasync(int fd) {
    RESOLVE(fdatasync);
    if (inject(fd, CALL_FDATASYNC, "fdatasync")) return -1;
    return real_fdatasync(fd);
}

int ftruncate(int fd, off_t length) {
    RESOLVE(ftruncate);
    if (inject(fd, CALL_FTRUNCATE, "ftruncate")) return -1;
    return real_ftruncate(fd, length);
}

int ftruncate64(int fd, off64_t length) {
    RESOLVE(ftruncate64);
    if (inject(fd, CALL_FTRUNCATE, "ftruncate64")) return -1;
    return real_ftruncate64(fd, length);
}

int fallocate(int fd, int mode, off_t offset, off_t length) {
    RESOLVE(fallocate);
    if (inject(fd, CALL_FALLOCATE, "fallocate")) return -1;
    return real_fallocate(fd, mode, offset, length);
}

int fallocate64(int fd, int mode, off64_t offset, off64_t length) {
    RESOLVE(fallocate64);
    if (inject(fd, CALL_FALLOCATE, "fallocate64")) return -1;
    return real_fallocate64(fd, mode, offset, length);
}

int posix_fallocate(int fd, off_t offset, off_t length) {
    RESOLVE(posix_fallocate);
    if (inject(fd, CALL_FALLOCATE, "posix_fallocate")) return EIO; /* returns the error, errno untouched */
    return real_posix_fallocate(fd, offset, length);
}

ssize_t read(int fd, void *buffer, size_t count) {
    RESOLVE(read);
    if (inject(fd, CALL_READ, "read")) return -1;
    return real_read(fd, buffer, count);
}

ssize_t pread(int fd, void *buffer, size_t count, off_t offset) {
    RESOLVE(pread);
    if (inject(fd, CALL_READ, "pread")) return -1;
    return real_pread(fd, buffer, count, offset);
}

ssize_t pread64(int fd, void *buffer, size_t count, off64_t offset) {
    RESOLVE(pread64);
    if (inject(fd, CALL_READ, "pread64")) return -1;
    return real_pread64(fd, buffer, count, offset);
}

ssize_t readv(int fd, const struct iovec *iov, int count) {
    RESOLVE(readv);
    if (inject(fd, CALL_READ, "readv")) return -1;
    return real_readv(fd, iov, count);
}

ssize_t preadv(int fd, const struct iovec *iov, int count, off_t offset) {
    RESOLVE(preadv);
    if (inject(fd, CALL_READ, "preadv")) return -1;
    return real_preadv(fd, iov, count, offset);
}
