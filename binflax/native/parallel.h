// The thread pool helper both native kernels (xnor_kernel.cc, int8_kernel.cc) share.
#ifndef BINFLAX_NATIVE_PARALLEL_H_
#define BINFLAX_NATIVE_PARALLEL_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace binflax {

namespace ffi = xla::ffi;

// Runs body(0) ... body(ends.back() - 1) on the calling thread and the pool's threads, in
// phases: the items of phase p, [ends[p - 1], ends[p]), start once every earlier item has
// finished (the operands are laid out before the arithmetic reads them). One parallel
// region rather than one per phase: waking a pool thread takes tens of microseconds
// here, as long as a small layer's whole layout step, so the helpers are woken once, at
// the start. Items are taken from an atomic counter, so the result does not depend on
// how many helpers ever start; one that starts after the work is done finds the counter
// exhausted and only releases its reference to the shared state.
inline void ParallelFor(ffi::ThreadPool& pool, std::vector<int64_t> ends,
                 const std::function<void(int64_t)>& body) {
  struct State {
    std::atomic<int64_t> next{0}, completed{0};
    std::vector<int64_t> ends;
    int64_t done = 0;
    std::mutex mutex;
    std::condition_variable finished;
    const std::function<void(int64_t)>* body = nullptr;
  };
  auto state = std::make_shared<State>();
  state->ends = std::move(ends);
  state->body = &body;
  const int64_t count = state->ends.back();
  // No item of a phase finishes before every earlier item has, so `completed` reaching a
  // phase's start means exactly that the earlier phases are done.
  auto work = [](State& s) {
    int64_t mine = 0;
    const int64_t count = s.ends.back();
    for (int64_t i; (i = s.next.fetch_add(1)) < count; ++mine) {
      int64_t start = 0;
      for (int64_t end : s.ends) {
        if (end > i) break;
        start = end;
      }
      while (s.completed.load(std::memory_order_acquire) < start) std::this_thread::yield();
      (*s.body)(i);
      s.completed.fetch_add(1, std::memory_order_release);
    }
    if (mine == 0) return;
    std::lock_guard<std::mutex> lock(s.mutex);
    s.done += mine;
    if (s.done == count) s.finished.notify_all();
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads() - 1, count - 1);
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule([state, work] { work(*state); });
  work(*state);
  std::unique_lock<std::mutex> lock(state->mutex);
  state->finished.wait(lock, [&] { return state->done == count; });
}

}  // namespace binflax

#endif  // BINFLAX_NATIVE_PARALLEL_H_
