// Sidestat: a tiny C shim for what Swift's Glibc module does not expose.
#ifndef CSIDESTAT_H
#define CSIDESTAT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A bit for each of the 16 bytes at `p` that is a ':' or a '\n' (bit i for byte i): the statsd parser's key
/// scan, one vector compare instead of a loop. `p` must have 16 readable bytes.
#if defined(__SSE2__)
#include <emmintrin.h>
static inline uint32_t sidestat_colons_newlines16(const void *p) {
    __m128i bytes = _mm_loadu_si128((const __m128i *)p);
    __m128i stops = _mm_or_si128(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(':')), _mm_cmpeq_epi8(bytes, _mm_set1_epi8('\n')));
    return (uint32_t)_mm_movemask_epi8(stops);
}
#elif defined(__aarch64__)
#include <arm_neon.h>
static inline uint32_t sidestat_colons_newlines16(const void *p) {
    uint8x16_t bytes = vld1q_u8((const uint8_t *)p);
    uint8x16_t stops = vorrq_u8(vceqq_u8(bytes, vdupq_n_u8(':')), vceqq_u8(bytes, vdupq_n_u8('\n')));
    static const uint8_t weights[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint8x16_t bits = vandq_u8(stops, vld1q_u8(weights));
    return (uint32_t)vaddv_u8(vget_low_u8(bits)) | ((uint32_t)vaddv_u8(vget_high_u8(bits)) << 8);
}
#else
static inline uint32_t sidestat_colons_newlines16(const void *p) {
    const uint8_t *bytes = (const uint8_t *)p;
    uint32_t stops = 0;
    for (int i = 0; i < 16; i++) stops |= (uint32_t)(bytes[i] == ':' || bytes[i] == '\n') << i;
    return stops;
}
#endif

/// A batch receiver: `count` buffers, `stride` bytes apart in `buffers`, each receiving at most `capacity` bytes.
/// Receives up to `count` datagrams with one recvmmsg(2) call and writes each datagram's length
/// into `lengths`. `flags` is passed to recvmmsg (MSG_DONTWAIT for a non-blocking drain).
/// Returns the number of datagrams, 0 on timeout or would-block, or -errno on error.
int sidestat_recv_batch(int fd, uint8_t *buffers, size_t stride, size_t capacity, unsigned count, uint32_t *lengths,
                        int flags);

/// MSG_DONTWAIT, for Swift.
int sidestat_msg_dontwait(void);

/// Sends `count` datagrams (buffers back to back, `size` bytes apart, each `lengths[i]` long) with sendmmsg(2)
/// to the already connected socket `fd`. Returns the number sent or -errno.
int sidestat_send_batch(int fd, const uint8_t *buffers, size_t size, unsigned count, const uint32_t *lengths);

/// Sets the kernel's name of the calling thread (at most 15 bytes are kept).
void sidestat_set_thread_name(const char *name);

/// Sets the process name seen by ps and top (prctl PR_SET_NAME on the main thread).
void sidestat_set_process_name(const char *name);

/// Asks the kernel to reclaim the resident pages of this executable's code and read-only data (MADV_PAGEOUT):
/// after start-up most of it is never used again, and what is used faults back in. Returns the bytes advised.
size_t sidestat_page_out_executable(void);

/// pipe2(O_CLOEXEC): a pipe whose ends are not inherited by other children.
int sidestat_pipe_cloexec(int fds[2]);

/// The local port socket `fd` is bound to (IPv4 or IPv6), or -1. (In C: Swift sees `sockaddr_in` through
/// whichever C module included its header first, which differs from one build to the next.)
int sidestat_local_port(int fd);

/// A Unix datagram socket bound at `path` (a stale socket file there is replaced; a live one or another file is an
/// error), with the file's mode set when `mode` >= 0. Returns the descriptor (close-on-exec) or -errno.
int sidestat_bind_unix_datagram(const char *path, int mode);

/// Bytes written to the TCP socket `fd` that the peer has not acknowledged yet (ioctl SIOCOUTQ), or -1.
int sidestat_unacknowledged_bytes(int fd);

/// Starts `path` (a full path) with `argv` and `envp` as a supervisor starts a child: fork, then in the child
/// PR_SET_PDEATHSIG with `death_signal` (when above 0; it goes to the child when the *thread* that called this
/// ends, so call it from a thread that lives as long as the child should), a process group of its own, every signal
/// at its default and unblocked, stdin from /dev/null, stdout and stderr to `output_fd` (when not -1, else
/// inherited), and no other descriptor of Sidestat's (an orphan must never keep a statsd port open). Returns 0 and
/// the pid, or the errno of what failed (exec's included, reported through a close-on-exec pipe).
int sidestat_spawn(const char *path, char *const argv[], char *const envp[], int output_fd, int death_signal,
                   int *pid_out);

/// Makes this process the subreaper of its descendants (PR_SET_CHILD_SUBREAPER).
int sidestat_set_child_subreaper(void);

/// An HTTP request through libcurl, loaded with dlopen on first use (so Sidestat links no HTTP or TLS library, and
/// costs nothing until an HTTP upstream is configured). `headers` is an array of `header_count` "Name: value"
/// strings; `userpwd` ("user:password", for basic auth) may be NULL. `timeout_ms` bounds the whole request,
/// `connect_timeout_ms` (at most `timeout_ms`) the connection. On return `*status` holds the HTTP status (0
/// when no response came) and `error` (of `error_size` bytes) a message when the result is not 0. `response` (may
/// be NULL) receives the start of the response body, NUL-terminated, in at most `response_size` bytes, and
/// `*retry_after` (may be NULL) the seconds of a `Retry-After` header, or -1.
/// Returns 0 when a response was received, -1 when libcurl cannot be loaded, and curl's error code otherwise.
int sidestat_http_request(const char *method, const char *url, const char *const *headers, int header_count,
                          const void *body, size_t body_length, const char *userpwd, long timeout_ms,
                          long connect_timeout_ms, long *status,
                          char *error, size_t error_size, char *response, size_t response_size,
                          long long *retry_after);

#ifdef __cplusplus
}
#endif

#endif
