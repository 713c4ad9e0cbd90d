// SidestatClient's socket set-up, in C because Swift's Glibc module makes sockaddr_un awkward to fill.
#ifndef CSIDESTAT_CLIENT_H
#define CSIDESTAT_CLIENT_H

#ifdef __cplusplus
extern "C" {
#endif

/// A non-blocking UDP socket connected to the first address of `host` (a name or a literal, IPv4 or IPv6) that
/// takes one, or -1 with errno set (EAI errors become EHOSTUNREACH).
int sidestat_client_udp(const char *host, int port);

/// A non-blocking Unix datagram socket connected to `path`, or -1 with errno set (ENAMETOOLONG for a path that does
/// not fit sockaddr_un).
int sidestat_client_unix_datagram(const char *path);

/// A non-blocking eventfd for waking the flush thread, or -1.
int sidestat_client_eventfd(void);

#ifdef __cplusplus
}
#endif

#endif
