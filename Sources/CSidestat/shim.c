#define _GNU_SOURCE
#include "CSidestat.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <limits.h>

#define SIDESTAT_MAX_BATCH 256

int sidestat_recv_batch(int fd, uint8_t *buffers, size_t size, unsigned count, uint32_t *lengths, int flags) {
    struct mmsghdr msgs[SIDESTAT_MAX_BATCH];
    struct iovec iovs[SIDESTAT_MAX_BATCH];
    if (count > SIDESTAT_MAX_BATCH) count = SIDESTAT_MAX_BATCH;
    memset(msgs, 0, sizeof(struct mmsghdr) * count);
    for (unsigned i = 0; i < count; i++) {
        iovs[i].iov_base = buffers + (size_t)i * size;
        iovs[i].iov_len = size;
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

int sidestat_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }
