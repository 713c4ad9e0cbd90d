#ifndef __linux__
#error "Sidestat runs on Linux only (recvmmsg, prctl, close_range, SIOCOUTQ)"
#endif
#define _GNU_SOURCE
#include "CSidestat.h"

#include <errno.h>
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <sys/uio.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <limits.h>

#define SIDESTAT_MAX_BATCH 256

int sidestat_recv_batch(int fd, uint8_t *buffers, size_t stride, size_t capacity, unsigned count, uint32_t *lengths,
                        int flags) {
    struct mmsghdr msgs[SIDESTAT_MAX_BATCH];
    struct iovec iovs[SIDESTAT_MAX_BATCH];
    if (count > SIDESTAT_MAX_BATCH) count = SIDESTAT_MAX_BATCH;
    memset(msgs, 0, sizeof(struct mmsghdr) * count);
    for (unsigned i = 0; i < count; i++) {
        iovs[i].iov_base = buffers + (size_t)i * stride;
        iovs[i].iov_len = capacity;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // MSG_WAITFORONE: block for the first datagram only, then take what is queued.
    int n = recvmmsg(fd, msgs, count, flags | ((flags & MSG_DONTWAIT) ? 0 : MSG_WAITFORONE), NULL);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return 0;
        return -errno;
    }
    for (int i = 0; i < n; i++) lengths[i] = msgs[i].msg_len;
    return n;
}

int sidestat_msg_dontwait(void) { return MSG_DONTWAIT; }

int sidestat_send_batch(int fd, const uint8_t *buffers, size_t size, unsigned count, const uint32_t *lengths) {
    struct mmsghdr msgs[SIDESTAT_MAX_BATCH];
    struct iovec iovs[SIDESTAT_MAX_BATCH];
    if (count > SIDESTAT_MAX_BATCH) count = SIDESTAT_MAX_BATCH;
    memset(msgs, 0, sizeof(struct mmsghdr) * count);
    for (unsigned i = 0; i < count; i++) {
        iovs[i].iov_base = (void *)(buffers + (size_t)i * size);
        iovs[i].iov_len = lengths[i];
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int n = sendmmsg(fd, msgs, count, 0);
    return n < 0 ? -errno : n;
}

void sidestat_set_thread_name(const char *name) {
    char buf[16];
    strncpy(buf, name, sizeof(buf) - 1);
    buf[sizeof(buf) - 1] = 0;
    pthread_setname_np(pthread_self(), buf);
}

void sidestat_set_process_name(const char *name) {
    char buf[16];
    strncpy(buf, name, sizeof(buf) - 1);
    buf[sizeof(buf) - 1] = 0;
    prctl(PR_SET_NAME, buf, 0, 0, 0);
}

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

size_t sidestat_page_out_executable(void) {
    char self[PATH_MAX];
    ssize_t length = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (length <= 0) return 0;
    self[length] = 0;
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps) return 0;
    char line[PATH_MAX + 128];
    size_t advised = 0;
    while (fgets(line, sizeof(line), maps)) {
        unsigned long start, end;
        char permissions[8];
        int path = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &start, &end, permissions, &path) < 3 || path == 0) continue;
        char *name = line + path;
        name[strcspn(name, "\n")] = 0;
        // Code and read-only data of our own file only: never writable data, never other libraries.
        if (strcmp(name, self) != 0 || permissions[1] == 'w') continue;
        if (madvise((void *)start, end - start, MADV_PAGEOUT) == 0) advised += end - start;
    }
    fclose(maps);
    return advised;
}

int sidestat_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

/* Closes every descriptor from `from` up except `keep`, in the child between fork and exec (async-signal-safe). */
static void close_from(int from, int keep) {
#ifdef SYS_close_range
    if (keep >= from) {
        if ((keep == from || syscall(SYS_close_range, from, keep - 1, 0) == 0)
            && syscall(SYS_close_range, keep + 1, ~0U, 0) == 0)
            return;
    } else if (syscall(SYS_close_range, from, ~0U, 0) == 0) {
        return;
    }
#endif
    struct rlimit limit;
    long max = (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) ? (long)limit.rlim_cur : 65536;
    if (max > 1 << 20) max = 1 << 20;
    for (long fd = from; fd < max; fd++)
        if (fd != keep) close((int)fd);
}

int sidestat_spawn(const char *path, char *const argv[], char *const envp[], int output_fd, int death_signal,
                   int *pid_out) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int error = errno;
        close(report[0]);
        close(report[1]);
        return error;
    }
    if (pid == 0) {
        /* The child: only async-signal-safe calls from here to exec. */
        int error = 0;
        if (death_signal > 0) {
            if (prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0) != 0) error = errno;
            if (getppid() != parent) _exit(127); /* Sidestat is gone already */
        }
        if (!error && setpgid(0, 0) != 0) error = errno;
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = SIG_DFL;
        for (int signal = 1; signal < NSIG; signal++) sigaction(signal, &action, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0) error = error ? error : errno;
        if (output_fd >= 0 && (dup2(output_fd, 1) < 0 || dup2(output_fd, 2) < 0)) error = error ? error : errno;
        if (!error) {
            close_from(3, report[1]);
            execve(path, argv, envp);
            error = errno;
        }
        ssize_t ignored = write(report[1], &error, sizeof error);
        (void)ignored;
        _exit(127);
    }
    close(report[1]);
    int error = 0;
    ssize_t count;
    do {
        count = read(report[0], &error, sizeof error);
    } while (count < 0 && errno == EINTR);
    close(report[0]);
    if (count == (ssize_t)sizeof error && error != 0) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        return error;
    }
    *pid_out = pid;
    return 0;
}

int sidestat_local_port(int fd) {
    struct sockaddr_storage address;
    socklen_t length = sizeof address;
    if (getsockname(fd, (struct sockaddr *)&address, &length) != 0) return -1;
    if (address.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&address)->sin6_port);
    if (address.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&address)->sin_port);
    return -1;
}

int sidestat_bind_unix_datagram(const char *path, int mode) {
    struct sockaddr_un address;
    memset(&address, 0, sizeof address);
    address.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof address.sun_path) return -ENAMETOOLONG;
    strcpy(address.sun_path, path);
    struct stat status;
    if (lstat(path, &status) == 0) {
        // A socket file left by an earlier run is replaced; one a live process reads is not, nor any other file.
        if (!S_ISSOCK(status.st_mode)) return -EEXIST;
        int probe = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (probe < 0) return -errno;
        int live = connect(probe, (struct sockaddr *)&address, sizeof address) == 0;
        close(probe);
        if (live) return -EADDRINUSE;
        if (unlink(path) != 0) return -errno;
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        int code = errno;
        close(fd);
        return -code;
    }
    if (mode >= 0 && chmod(path, (mode_t)mode) != 0) {
        int code = errno;
        close(fd);
        unlink(path);
        return -code;
    }
    return fd;
}

int sidestat_unacknowledged_bytes(int fd) {
    int value = 0;
    return ioctl(fd, SIOCOUTQ, &value) == 0 ? value : -1;
}

int sidestat_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

// ---- libcurl, loaded on first use -------------------------------------------------------------------------------
// The option numbers are libcurl's stable ABI (curl/curl.h): OBJECTPOINT = 10000, FUNCTIONPOINT = 20000.
#define SIDESTAT_CURLOPT_URL 10002
#define SIDESTAT_CURLOPT_USERPWD 10005
#define SIDESTAT_CURLOPT_ERRORBUFFER 10010
#define SIDESTAT_CURLOPT_POSTFIELDS 10015
#define SIDESTAT_CURLOPT_HTTPHEADER 10023
#define SIDESTAT_CURLOPT_CUSTOMREQUEST 10036
#define SIDESTAT_CURLOPT_WRITEFUNCTION 20011
#define SIDESTAT_CURLOPT_POSTFIELDSIZE 60
#define SIDESTAT_CURLOPT_NOSIGNAL 99
#define SIDESTAT_CURLOPT_TIMEOUT_MS 155
#define SIDESTAT_CURLOPT_CONNECTTIMEOUT_MS 156
#define SIDESTAT_CURLOPT_WRITEDATA 10001
#define SIDESTAT_CURLINFO_RESPONSE_CODE 0x200002
// CURLINFO_OFF_T + 57, libcurl 7.66 and later (an older one answers an error, and there is no Retry-After).
#define SIDESTAT_CURLINFO_RETRY_AFTER 0x600039

struct sidestat_slist;
static struct {
    pthread_once_t once;
    int loaded;
    void *(*easy_init)(void);
    int (*easy_setopt)(void *, int, ...);
    int (*easy_perform)(void *);
    void (*easy_cleanup)(void *);
    int (*easy_getinfo)(void *, int, ...);
    const char *(*easy_strerror)(int);
    struct sidestat_slist *(*slist_append)(struct sidestat_slist *, const char *);
    void (*slist_free_all)(struct sidestat_slist *);
    int (*global_init)(long);
} curl = {PTHREAD_ONCE_INIT, 0};

static void sidestat_load_curl(void) {
    const char *names[] = {"libcurl.so.4", "libcurl.so", "libcurl-gnutls.so.4", NULL};
    void *lib = NULL;
    for (int i = 0; names[i] && !lib; i++) lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!lib) return;
    curl.easy_init = dlsym(lib, "curl_easy_init");
    curl.easy_setopt = dlsym(lib, "curl_easy_setopt");
    curl.easy_perform = dlsym(lib, "curl_easy_perform");
    curl.easy_cleanup = dlsym(lib, "curl_easy_cleanup");
    curl.easy_getinfo = dlsym(lib, "curl_easy_getinfo");
    curl.easy_strerror = dlsym(lib, "curl_easy_strerror");
    curl.slist_append = dlsym(lib, "curl_slist_append");
    curl.slist_free_all = dlsym(lib, "curl_slist_free_all");
    curl.global_init = dlsym(lib, "curl_global_init");
    if (curl.easy_init && curl.easy_setopt && curl.easy_perform && curl.easy_cleanup && curl.easy_getinfo &&
        curl.slist_append && curl.slist_free_all && curl.global_init) {
        curl.global_init(3 /* CURL_GLOBAL_DEFAULT */);
        curl.loaded = 1;
    }
}

/// The start of a response body: what fits in `size` bytes is kept, the rest is read and dropped.
struct sidestat_response {
    char *data;
    size_t size;
    size_t used;
};

static size_t sidestat_keep_start(char *data, size_t size, size_t count, void *context) {
    struct sidestat_response *response = context;
    size_t length = size * count;
    if (response && response->data && response->used + 1 < response->size) {
        size_t room = response->size - 1 - response->used;
        size_t taken = length < room ? length : room;
        memcpy(response->data + response->used, data, taken);
        response->used += taken;
        response->data[response->used] = 0;
    }
    return length;
}

int sidestat_http_request(const char *method, const char *url, const char *const *headers, int header_count,
                          const void *body, size_t body_length, const char *userpwd, long timeout_ms,
                          long connect_timeout_ms, long *status,
                          char *error, size_t error_size, char *response, size_t response_size,
                          long long *retry_after) {
    pthread_once(&curl.once, sidestat_load_curl);
    *status = 0;
    if (retry_after) *retry_after = -1;
    if (response && response_size > 0) response[0] = 0;
    struct sidestat_response kept = {response, response_size, 0};
    if (!curl.loaded) {
        snprintf(error, error_size, "libcurl (libcurl.so.4) cannot be loaded");
        return -1;
    }
    void *handle = curl.easy_init();
    if (!handle) {
        snprintf(error, error_size, "curl_easy_init failed");
        return -1;
    }
    char curl_error[256] = {0};
    struct sidestat_slist *list = NULL;
    for (int i = 0; i < header_count; i++) list = curl.slist_append(list, headers[i]);
    curl.easy_setopt(handle, SIDESTAT_CURLOPT_URL, url);
    curl.easy_setopt(handle, SIDESTAT_CURLOPT_NOSIGNAL, 1L);
    curl.easy_setopt(handle, SIDESTAT_CURLOPT_ERRORBUFFER, curl_error);
    curl.easy_setopt(handle, SIDESTAT_CURLOPT_TIMEOUT_MS, timeout_ms);
    curl.easy_setopt(handle, SIDESTAT_CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
    curl.easy_setopt(handle, SIDESTAT_CURLOPT_WRITEFUNCTION, sidestat_keep_start);
    curl.easy_setopt(handle, SIDESTAT_CURLOPT_WRITEDATA, &kept);
    if (list) curl.easy_setopt(handle, SIDESTAT_CURLOPT_HTTPHEADER, list);
    if (userpwd) curl.easy_setopt(handle, SIDESTAT_CURLOPT_USERPWD, userpwd);
    if (body) {
        curl.easy_setopt(handle, SIDESTAT_CURLOPT_POSTFIELDSIZE, (long)body_length);
        curl.easy_setopt(handle, SIDESTAT_CURLOPT_POSTFIELDS, body);
    }
    if (method) curl.easy_setopt(handle, SIDESTAT_CURLOPT_CUSTOMREQUEST, method);
    int result = curl.easy_perform(handle);
    if (result == 0) {
        curl.easy_getinfo(handle, SIDESTAT_CURLINFO_RESPONSE_CODE, status);
        long long seconds = -1;
        if (retry_after && curl.easy_getinfo(handle, SIDESTAT_CURLINFO_RETRY_AFTER, &seconds) == 0 && seconds > 0) {
            *retry_after = seconds;
        }
    } else {
        snprintf(error, error_size, "%s", curl_error[0] ? curl_error : (curl.easy_strerror ? curl.easy_strerror(result) : "curl error"));
    }
    curl.easy_cleanup(handle);
    if (list) curl.slist_free_all(list);
    return result;
}
