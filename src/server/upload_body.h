// A Beast body for request bodies that grows as bytes arrive, and only within the server's
// memory budget. Beast's string_body reserves the declared Content-Length before a byte of
// it arrives (200 connections declaring 100 MiB each took 20 GB of address space); this one
// allocates geometrically up to the bytes actually received (never past the declared
// length), and takes every byte it holds from the process-wide MemoryBudget first. When
// the budget refuses, put() fails with errc::not_enough_memory and the server answers 503.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/optional.hpp>

#include "server/memory_budget.h"

namespace voxtral {

struct UploadBody {
  struct value_type {
    std::string data;
    // What `data` holds from the budget: at least data.capacity() while the body is read.
    // The caller may grow it beforehand (e.g. by a declared Content-Length, admission
    // control without allocation); put() then allocates within it.
    MemoryBudget::Hold hold;
    std::uint64_t declared = 0;  // Content-Length, 0 if none or chunked
  };

  static std::uint64_t size(const value_type& body) { return body.data.size(); }

  class reader {
   public:
    template <bool isRequest, class Fields>
    explicit reader(boost::beast::http::header<isRequest, Fields>&, value_type& body) : body_(body) {}

    void init(const boost::optional<std::uint64_t>& length, boost::beast::error_code& ec) {
      body_.declared = length ? *length : 0;  // no reservation: see the file comment
      ec = {};
    }

    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, boost::beast::error_code& ec) {
      const std::size_t n = boost::asio::buffer_size(buffers);
      std::string& data = body_.data;
      const std::size_t needed = data.size() + n;
      if (needed > data.capacity()) {
        std::size_t capacity = std::max(needed, data.capacity() * 2);
        if (body_.declared != 0 && body_.declared >= needed) {
          capacity = std::min<std::size_t>(capacity, static_cast<std::size_t>(body_.declared));
        }
        if (!within_budget(capacity) && (capacity == needed || !within_budget(needed))) return refuse(ec);
        // A fresh string reserves exactly (growing one in place may round up, e.g. double).
        std::string grown;
        grown.reserve(std::max(needed, std::min(capacity, body_.hold.bytes())));
        if (!within_budget(grown.capacity())) return refuse(ec);
        grown.append(data);
        data.swap(grown);
      }
      const std::size_t at = data.size();
      data.resize(needed);
      boost::asio::buffer_copy(boost::asio::buffer(data.data() + at, n), buffers);
      ec = {};
      return n;
    }

    void finish(boost::beast::error_code& ec) { ec = {}; }

   private:
    std::size_t refuse(boost::beast::error_code& ec) {
      ec = boost::system::errc::make_error_code(boost::system::errc::not_enough_memory);
      return 0;
    }
    // Whether the hold covers `bytes` (growing it from the budget if needed).
    bool within_budget(std::size_t bytes) {
      return bytes <= body_.hold.bytes() || body_.hold.grow(bytes - body_.hold.bytes());
    }
    value_type& body_;
  };
};

}  // namespace voxtral
