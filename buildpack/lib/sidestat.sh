# Shared by the classic Heroku buildpack (bin/compile) and the Cloud Native Buildpack (bin/build): which release to
# fetch, and fetching it with its checksum verified, into a cache directory that a later build reuses.
#
# Settings (Heroku config vars, or CNB platform env vars):
#   SIDESTAT_VERSION       the release to install (default: SIDESTAT_DEFAULT_VERSION below)
#   SIDESTAT_DOWNLOAD_URL  the archive's URL (default: the release's on the project's download site); any URL curl
#                          reads, file:// included
#   SIDESTAT_SHA256        the archive's SHA-256; without it, the checksum is read from "<URL>.sha256", which
#                          scripts/release writes beside every archive

# The release this buildpack installs by default; a test checks that it is Sources/SidestatSupport/Version.swift's.
SIDESTAT_DEFAULT_VERSION="0.9.0"
SIDESTAT_DOWNLOAD_BASE="https://github.com/sidestat/sidestat/releases/download"

sidestat_error() {
    echo " !     Sidestat: $*" >&2
    exit 1
}

sidestat_archive_name() {
    local arch
    arch="$(uname -m)"
    echo "sidestat-$1-linux-$arch.tar.gz"
}

# sidestat_fetch VERSION URL CACHE: leaves a verified archive at CACHE/sidestat.tar.gz, downloading only when the
# cache does not hold this URL's archive with its checksum. Prints what it did; on failure prints one line and exits 1.
sidestat_fetch() {
    local version="$1" url="$2" cache="$3"
    mkdir -p "$cache"
    local archive="$cache/sidestat.tar.gz"
    if [ -f "$archive" ] && [ "$(cat "$cache/url" 2>/dev/null)" = "$url" ] && [ -f "$cache/sha256" ]; then
        local cached
        cached="$(cat "$cache/sha256")"
        if [ -z "${SIDESTAT_SHA256:-}" ] || [ "$SIDESTAT_SHA256" = "$cached" ]; then
            if [ "$(sha256sum "$archive" | cut -d' ' -f1)" = "$cached" ]; then
                echo "       Using the cached Sidestat $version archive (sha256 $cached)"
                return 0
            fi
        fi
    fi
    local expected="${SIDESTAT_SHA256:-}"
    if [ -z "$expected" ]; then
        expected="$(curl -fsSL --retry 2 --connect-timeout 10 "$url.sha256" 2>/dev/null | cut -d' ' -f1)" ||
            sidestat_error "could not download the checksum $url.sha256 (set SIDESTAT_SHA256, or check SIDESTAT_DOWNLOAD_URL)"
        [ -n "$expected" ] || sidestat_error "the checksum file $url.sha256 is empty"
    fi
    echo "       Downloading $url"
    local partial="$cache/sidestat.tar.gz.partial"
    local status=0
    curl -fsSL --retry 2 --connect-timeout 10 -o "$partial" "$url" 2>/dev/null || status=$?
    if [ "$status" -ne 0 ]; then
        rm -f "$partial"
        sidestat_error "could not download $url (curl exit code $status; check SIDESTAT_VERSION and SIDESTAT_DOWNLOAD_URL)"
    fi
    local actual
    actual="$(sha256sum "$partial" | cut -d' ' -f1)"
    if [ "$actual" != "$expected" ]; then
        rm -f "$partial"
        sidestat_error "checksum mismatch for $url: expected $expected, got $actual"
    fi
    mv "$partial" "$archive"
    echo "$url" > "$cache/url"
    echo "$expected" > "$cache/sha256"
}

# sidestat_unpack CACHE DESTINATION: the archive's binary as DESTINATION/sidestat.
sidestat_unpack() {
    local cache="$1" destination="$2" unpacked
    unpacked="$(mktemp -d)"
    tar -xzf "$cache/sidestat.tar.gz" -C "$unpacked" || sidestat_error "the archive $cache/sidestat.tar.gz cannot be unpacked"
    local binary
    binary="$(find "$unpacked" -type f -name sidestat | head -1)"
    [ -n "$binary" ] || sidestat_error "the archive holds no sidestat binary"
    mkdir -p "$destination"
    install -m 0755 "$binary" "$destination/sidestat"
    rm -rf "$unpacked"
}

# Whether the app in DIRECTORY uses Sidestat: a Procfile.chain (the processes `sidestat start` runs) or a statsd
# config file.
sidestat_detect() {
    local directory="$1" file
    for file in Procfile.chain statsd-config.js statsd-config.json statsd.config.js sidestat.js; do
        [ -f "$directory/$file" ] && return 0
    done
    return 1
}
