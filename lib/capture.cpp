#include "sovereign/capture.h"

#include <cstring>

namespace sov::capture {

bool RawReader::read_exact(std::uint8_t* p, std::size_t n, std::size_t& got) {
    got = 0;
    while (got < n) {
        long r = in_.read(p + got, n - got);
        if (r < 0) {
            err_ = {Errc::io_error, pos_ + got};
            return false;
        }
        if (r == 0) return false;
        got += std::size_t(r);
    }
    return true;
}

bool RawReader::next(ByteView& message) {
    if (err_) return false;
    off_ = pos_;
    std::uint8_t len_le[4];
    std::size_t got;
    if (!read_exact(len_le, 4, got)) {
        if (!err_ && got != 0) err_ = {Errc::truncated, off_};
        return false;
    }
    std::uint32_t n = std::uint32_t(len_le[0]) | std::uint32_t(len_le[1]) << 8 | std::uint32_t(len_le[2]) << 16 |
                      std::uint32_t(len_le[3]) << 24;
    if (n == 0) { err_ = {Errc::frame_zero_length, off_}; return false; }
    if (n > kMaxMessage) { err_ = {Errc::frame_oversized, off_}; return false; }
    buf_.resize(n);
    if (!read_exact(buf_.data(), n, got)) {
        if (!err_) err_ = {Errc::truncated, off_};
        return false;
    }
    pos_ += 4 + n;
    message = {buf_.data(), n};
    return true;
}

void append_raw(std::vector<std::uint8_t>& out, ByteView message) {
    std::uint32_t n = std::uint32_t(message.size());
    std::uint8_t le[4] = {std::uint8_t(n), std::uint8_t(n >> 8), std::uint8_t(n >> 16), std::uint8_t(n >> 24)};
    out.insert(out.end(), le, le + 4);
    out.insert(out.end(), message.begin(), message.end());
}

bool load(const std::string& path, std::vector<std::vector<std::uint8_t>>& messages, std::string& error) {
    io::Input in = io::Input::open(path);
    if (in.open_errno()) {
        error = path + ": " + std::strerror(in.open_errno());
        return false;
    }
    RawReader r(std::move(in));
    ByteView m;
    while (r.next(m)) messages.emplace_back(m.begin(), m.end());
    if (r.error()) {
        error = path + ":" + std::to_string(r.error().offset) + ": " + std::string(to_string(r.error().errc));
        if (r.error().errc == Errc::io_error) error += ": " + r.input().error_text();
        return false;
    }
    return true;
}

}  // namespace sov::capture
