#include "sovereign/io.h"

#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>
#include <vector>

namespace sov::io {

namespace {
std::atomic<const std::atomic<bool>*> g_interrupt{nullptr};
bool interrupted() noexcept {
    const std::atomic<bool>* f = g_interrupt.load(std::memory_order_relaxed);
    return f && f->load(std::memory_order_relaxed);
}
}  // namespace

void set_interrupt_flag(const std::atomic<bool>* flag) noexcept { g_interrupt.store(flag); }

struct Input::Zstd {
    ZSTD_DStream* ds = ZSTD_createDStream();
    std::vector<std::uint8_t> in = std::vector<std::uint8_t>(ZSTD_DStreamInSize());
    ZSTD_inBuffer ib{nullptr, 0, 0};
    bool eof = false;
    bool frame_done = true;  // last ZSTD_decompressStream returned 0 (frame complete)
    ~Zstd() { ZSTD_freeDStream(ds); }
};

Input Input::open(const std::string& path) {
    if (path == "-") return from_fd(0, "stdin");
    Input in;
    in.name_ = path;
    in.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (in.fd_ < 0) in.open_errno_ = errno;
    else in.own_ = true;
    return in;
}

Input Input::from_fd(int fd, std::string name) {
    Input in;
    in.fd_ = fd;
    in.name_ = std::move(name);
    return in;
}

Input::Input(Input&& o) noexcept { *this = std::move(o); }

Input& Input::operator=(Input&& o) noexcept {
    if (this != &o) {
        if (own_) ::close(fd_);
        fd_ = o.fd_;
        own_ = o.own_;
        name_ = std::move(o.name_);
        open_errno_ = o.open_errno_;
        error_ = std::move(o.error_);
        zstd_ = std::move(o.zstd_);
        sniffed_ = o.sniffed_;
        std::memcpy(peek_, o.peek_, sizeof peek_);
        peek_len_ = o.peek_len_;
        peek_pos_ = o.peek_pos_;
        o.own_ = false;
        o.fd_ = -1;
    }
    return *this;
}

Input::~Input() {
    if (own_) ::close(fd_);
}

long Input::raw_read(std::uint8_t* buf, std::size_t n) {
    if (peek_pos_ < peek_len_) {
        std::size_t k = std::min(n, peek_len_ - peek_pos_);
        std::memcpy(buf, peek_ + peek_pos_, k);
        peek_pos_ += k;
        return long(k);
    }
    for (;;) {
        // A stop was asked for: read no more (what was read before is still processed), even
        // when data keeps coming and read(2) would never block to see the EINTR.
        if (interrupted()) {
            error_ = "interrupted";
            return -1;
        }
        ssize_t r = ::read(fd_, buf, n);
        if (r >= 0) return long(r);
        if (errno == EINTR && !interrupted()) continue;
        error_ = errno == EINTR ? "interrupted" : std::strerror(errno);
        return -1;
    }
}

long Input::read(std::uint8_t* buf, std::size_t n) {
    if (fd_ < 0) {
        error_ = std::strerror(open_errno_ ? open_errno_ : EBADF);
        return -1;
    }
    if (!sniffed_) {
        sniffed_ = true;
        while (peek_len_ < 4) {
            if (interrupted()) {
                error_ = "interrupted";
                return -1;
            }
            ssize_t r = ::read(fd_, peek_ + peek_len_, 4 - peek_len_);
            if (r < 0 && errno == EINTR && !interrupted()) continue;
            if (r < 0) {
                error_ = std::strerror(errno);
                return -1;
            }
            if (r == 0) break;
            peek_len_ += std::size_t(r);
        }
        static const std::uint8_t magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
        if (peek_len_ == 4 && std::memcmp(peek_, magic, 4) == 0) zstd_ = std::make_unique<Zstd>();
    }
    if (!zstd_) return raw_read(buf, n);
    Zstd& z = *zstd_;
    ZSTD_outBuffer ob{buf, n, 0};
    while (ob.pos == 0) {
        if (z.ib.pos == z.ib.size) {
            if (z.eof) {
                if (!z.frame_done) {
                    error_ = "zstd: input ends inside a compressed frame";
                    return -1;
                }
                return 0;
            }
            long r = raw_read(z.in.data(), z.in.size());
            if (r < 0) return -1;
            if (r == 0) {
                z.eof = true;
                continue;
            }
            z.ib = ZSTD_inBuffer{z.in.data(), std::size_t(r), 0};
        }
        std::size_t rc = ZSTD_decompressStream(z.ds, &ob, &z.ib);
        if (ZSTD_isError(rc)) {
            error_ = std::string("zstd: ") + ZSTD_getErrorName(rc);
            return -1;
        }
        z.frame_done = rc == 0;
    }
    return long(ob.pos);
}

bool read_all(const std::string& path, std::string& out, std::string& error) {
    Input in = Input::open(path);
    if (in.open_errno()) {
        error = path + ": " + std::strerror(in.open_errno());
        return false;
    }
    out.clear();
    std::vector<std::uint8_t> buf(1 << 16);
    for (;;) {
        long r = in.read(buf.data(), buf.size());
        if (r < 0) {
            error = path + ": " + in.error_text();
            return false;
        }
        if (r == 0) return true;
        out.append(reinterpret_cast<const char*>(buf.data()), std::size_t(r));
    }
}

}  // namespace sov::io
