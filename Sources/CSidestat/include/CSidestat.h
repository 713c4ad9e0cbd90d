// Sidestat: a tiny C shim for what Swift's Glibc module does not expose.
#ifndef CSIDESTAT_H
#define CSIDESTAT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// A batch receiver: `count` buffers of `size` bytes each, laid out back to back in `buffers`.
/// Receives up to `count` datagrams with one recvmmsg(2) call and writes each datagram's length
/// into `lengths`. `flags` is passed to recvmmsg (MSG_DONTWAIT for a non-blocking drain).
/// Returns the number of datagrams, 0 on timeout or would-block, or -errno on error.
int sidestat_recv_batch(int fd, uint8_t *buffers, size_t size, unsigned count, uint32_t *lengths, int flags);

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

/// Makes this process the subreaper of its descendants (PR_SET_CHILD_SUBREAPER).
int sidestat_set_child_subreaper(void);

/// An HTTP request through libcurl, loaded with dlopen on first use (so Sidestat links no HTTP or TLS library, and
/// costs nothing until an HTTP upstream is configured). `headers` is an array of `header_count` "Name: value"
/// strings; `userpwd` ("user:password", for basic auth) may be NULL. On return `*status` holds the HTTP status (0
/// when no response came) and `error` (of `error_size` bytes) a message when the result is not 0.
/// Returns 0 when a response was received, -1 when libcurl cannot be loaded, and curl's error code otherwise.
int sidestat_http_request(const char *method, const char *url, const char *const *headers, int header_count,
                          const void *body, size_t body_length, const char *userpwd, long timeout_ms, long *status,
                          char *error, size_t error_size);

#ifdef __cplusplus
}
#endif

#endif
