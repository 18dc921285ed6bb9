// The SS2D selective scan on a CPU: all four directions of a (B, H, W, Di)
// channel-last map in one pass, forward and backward. Built at first use by
// kernels/ss2d_cpu.py (torch.utils.cpp_extension.load), which also does the
// projections (matmuls) around it; kernels/reference.py is the specification.
//
// Per direction k, channel d and position t of the direction's order
// (row-major, column-major, and both reversed, over the same buffers):
//   dt    = sum_r x_dbl[t, k, r] * Wdt[k, r, d]   (the dt projection)
//   delta = softplus(dt + bias[k, d])
//   h[n]  = exp(delta * A[k, n, d]) * h[n] + delta * u[t, d] * Bs[t, k, n]
//   y[t, d] += sum_n Cs[t, k, n] * h[n] + D[k, d] * u[t, d]
// Time runs sequentially; channels are the vector lanes (contiguous in the
// channel-last layout), so no direction is ever copied or flipped.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t kBlock = 64;  // channels per task (vector lanes x unroll)

// exp and log1p that GCC vectorises (no libm calls in the channel loops):
// Cephes-style range reduction and polynomials, about 2 ulp in float32.
// double (gradcheck and the float64 tests) uses libm.
inline float vexp(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  float n = std::nearbyint(x * 1.44269504088896341f);
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// log(m) for m in [1, 2] (the argument of log1p below), Cephes logf.
inline float vlog_1_2(float m) {
  // m in [1, 2]: fold into [sqrt(1/2), sqrt(2)) with exponent e in {0, 1}
  float big = m > 1.41421356237f ? 1.0f : 0.0f;
  float x = m * (big > 0.f ? 0.5f : 1.0f) - 1.0f;
  float z = x * x;
  float y = 7.0376836292e-2f;
  y = y * x - 1.1514610310e-1f;
  y = y * x + 1.1676998740e-1f;
  y = y * x - 1.2420140846e-1f;
  y = y * x + 1.4249322787e-1f;
  y = y * x - 1.6668057665e-1f;
  y = y * x + 2.0000714765e-1f;
  y = y * x - 2.4999993993e-1f;
  y = y * x + 3.3333331174e-1f;
  y = y * x * z;
  y += big * -2.12194440e-4f;
  y += -0.5f * z;
  return x + y + big * 0.693359375f;
}

// log1p(v) for v in [0, 1]: log(1 + v) * v / ((1 + v) - 1) cancels the
// rounding of 1 + v (exact where 1 + v rounds to 1).
inline float vlog1p_01(float v) {
  float w = 1.0f + v;
  float d = w - 1.0f;
  float l = vlog_1_2(w);
  return d == 0.f ? v : l * (v / d);
}

inline double vexp(double x) { return std::exp(x); }
inline double vlog1p_01(double v) { return std::log1p(v); }

// softplus(z) = max(z, 0) + log1p(exp(-|z|)) (torch's threshold 20: z
// itself above it) and its derivative sigmoid(z).
template <typename T>
inline void softplus(T z, T& delta, T& sig) {
  T e = vexp(-std::abs(z));
  T l = vlog1p_01(e);
  T inv = T(1) / (T(1) + e);
  delta = z > T(20) ? z : std::max(z, T(0)) + l;
  sig = z > T(20) ? T(1) : (z >= T(0) ? inv : e * inv);
}

// Position (row-major index into H*W) of step t of direction k.
struct Order {
  int64_t p0, so, si, no, ni;  // start, outer/inner strides and counts
  Order(int k, int64_t H, int64_t W) {
    const int64_t L = H * W;
    switch (k) {
      case 0: p0 = 0; so = W; si = 1; no = H; ni = W; break;
      case 1: p0 = 0; so = 1; si = W; no = W; ni = H; break;
      case 2: p0 = L - 1; so = -W; si = -1; no = H; ni = W; break;
      default: p0 = L - 1; so = -1; si = -W; no = W; ni = H; break;
    }
  }
  template <typename F>
  inline void each(F f) const {  // f(t, p) in scan order
    int64_t t = 0;
    for (int64_t o = 0; o < no; ++o) {
      int64_t p = p0 + o * so;
      for (int64_t i = 0; i < ni; ++i, ++t, p += si) f(t, p);
    }
  }
  template <typename F>
  inline void each_reversed(F f) const {
    int64_t t = no * ni - 1;
    for (int64_t o = no - 1; o >= 0; --o) {
      int64_t p = p0 + o * so + (ni - 1) * si;
      for (int64_t i = ni - 1; i >= 0; --i, --t, p -= si) f(t, p);
    }
  }
};

// Per position, the channel-wise part before the states: delta, delta * u
// and sigmoid(dt + bias) (the derivative of softplus).
template <typename T>
inline void step_in(int64_t nd, const T* __restrict dt,
                    const T* __restrict bias, const T* __restrict u,
                    T* __restrict delta, T* __restrict du,
                    T* __restrict sig) {
#pragma omp simd
  for (int64_t d = 0; d < nd; ++d) {
    T dl, sg;
    softplus(dt[d] + bias[d], dl, sg);
    delta[d] = dl;
    du[d] = dl * u[d];
    sig[d] = sg;
  }
}

// The forward's version: dt is the dt projection of xr (R values) through
// w (R, Di), computed here (at batch 8 this beat a matmul that writes dt:
// VMamba-T's 14 cores 216 vs 301 ms on one thread; the backward, which
// needs dt's gradient as a tensor anyway, reads dt from memory).
template <typename T>
inline void step_in_proj(int64_t nd, int64_t R, int64_t Di,
                         const T* __restrict xr, const T* __restrict w,
                         const T* __restrict bias, const T* __restrict u,
                         T* __restrict delta, T* __restrict du) {
  T z[kBlock];
#pragma omp simd
  for (int64_t d = 0; d < nd; ++d) z[d] = bias[d];
  for (int64_t r = 0; r < R; ++r) {
    const T xv = xr[r];
    const T* __restrict wr = w + r * Di;
#pragma omp simd
    for (int64_t d = 0; d < nd; ++d) z[d] += xv * wr[d];
  }
#pragma omp simd
  for (int64_t d = 0; d < nd; ++d) {
    T dl, sg;
    softplus(z[d], dl, sg);
    delta[d] = dl;
    du[d] = dl * u[d];
  }
}

struct Shapes {
  int64_t Bsz, H, W, L, Di, N, R, RN2;
  int64_t nblk, bw;  // channel blocks (one task each) and their width
};

Shapes shapes_of(const torch::Tensor& u, const torch::Tensor& xdbl,
                 const torch::Tensor& A) {
  Shapes s;
  s.Bsz = u.size(0);
  s.H = u.size(1);
  s.W = u.size(2);
  s.L = s.H * s.W;
  s.Di = u.size(3);
  s.N = A.size(1);
  s.RN2 = xdbl.size(3) / 4;
  s.R = s.RN2 - 2 * s.N;
  // Blocks of 16 to kBlock channels (whole 64-byte lines: no two tasks
  // write one line); for a small batch as many as make the task count a
  // multiple of the threads (no thread idles at the end).
  const int64_t threads = at::get_num_threads();
  int64_t nblk = (s.Di + kBlock - 1) / kBlock;
  while (s.Bsz * nblk < 8 * threads && (s.Bsz * nblk) % threads &&
         (nblk + 1) * 16 <= s.Di)
    ++nblk;
  s.bw = std::min(kBlock, ((s.Di + nblk - 1) / nblk + 15) / 16 * 16);
  s.nblk = (s.Di + s.bw - 1) / s.bw;
  return s;
}

// u (B, H, W, Di); xdbl (B, H, W, 4 * (R + 2N)): per direction the R dt
// inputs, then Bs and Cs; wdt (4, R, Di): the dt projection, transposed;
// A (4, N, Di) = -exp(A_logs); D, bias (4, Di). Returns y (B, H, W, Di).
template <typename T>
void forward_impl(const Shapes& s, const T* u, const T* wdt, const T* xdbl,
                  const T* A, const T* D, const T* bias, T* y) {
  const int64_t Di = s.Di, N = s.N, L = s.L, RN2 = s.RN2, R = s.R;
  at::parallel_for(0, s.Bsz * s.nblk, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> hbuf(N * kBlock);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / s.nblk, d0 = (task % s.nblk) * s.bw;
      const int64_t nd = std::min(s.bw, Di - d0);
      const T* ub = u + b * L * Di + d0;
      const T* xb = xdbl + b * L * 4 * RN2;
      T* yb = y + b * L * Di + d0;
      for (int k = 0; k < 4; ++k) {
        const T* wk = wdt + k * R * Di + d0;
        const T* Ak = A + k * N * Di + d0;
        const T* Dk = D + k * Di + d0;
        const T* biask = bias + k * Di + d0;
        T* h = hbuf.data();
        std::fill(hbuf.begin(), hbuf.end(), T(0));
        const bool first = k == 0;
        Order(k, s.H, s.W).each([&](int64_t, int64_t p) {
          const T* up = ub + p * Di;
          const T* xr = xb + p * 4 * RN2 + k * RN2;
          const T* BC = xr + R;
          T* yp = yb + p * Di;
          T dl[kBlock], duv[kBlock], acc[kBlock];
          step_in_proj(nd, R, Di, xr, wk, biask, up, dl, duv);
#pragma omp simd
          for (int64_t d = 0; d < nd; ++d) acc[d] = Dk[d] * up[d];
          for (int64_t n = 0; n < N; ++n) {
            const T Bn = BC[n], Cn = BC[N + n];
            const T* An = Ak + n * Di;
            T* hn = h + n * kBlock;
#pragma omp simd
            for (int64_t d = 0; d < nd; ++d) {
              const T v = vexp(dl[d] * An[d]) * hn[d] + duv[d] * Bn;
              hn[d] = v;
              acc[d] += Cn * v;
            }
          }
          if (first) {
            for (int64_t d = 0; d < nd; ++d) yp[d] = acc[d];
          } else {
            for (int64_t d = 0; d < nd; ++d) yp[d] += acc[d];
          }
        });
      }
    }
  });
}

// Gradients. dy (B, H, W, Di). Outputs: du (B, H, W, Di) (the scan's part:
// through delta*u and D*u); ddt (4, B, H, W, Di) (w.r.t. dt + bias);
// dBC (nblk, B, H, W, 4, 2N) per-channel-block partial sums of dBs, dCs;
// dA, dD, dbias per batch (B, 4, N, Di), (B, 4, Di), (B, 4, Di).
template <typename T>
void backward_impl(const Shapes& s, const T* u, const T* dt, const T* xdbl,
                   const T* A, const T* D, const T* bias, const T* dy, T* du,
                   T* ddt, T* dBC, T* dA, T* dD, T* dbias) {
  const int64_t Di = s.Di, N = s.N, L = s.L, RN2 = s.RN2, R = s.R;
  at::parallel_for(0, s.Bsz * s.nblk, 1, [&](int64_t begin, int64_t end) {
    // per position: delta, sigmoid, and per state a and h (recomputed here
    // instead of saved by the forward)
    std::vector<T> buf_delta(L * kBlock), buf_sig(L * kBlock);
    std::vector<T> buf_a(L * N * kBlock), buf_h(L * N * kBlock);
    std::vector<T> hbuf(N * kBlock), gbuf(N * kBlock), zeros(N * kBlock);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / s.nblk, blk = task % s.nblk;
      const int64_t d0 = blk * s.bw;
      const int64_t nd = std::min(s.bw, Di - d0);
      const T* ub = u + b * L * Di + d0;
      const T* dyb = dy + b * L * Di + d0;
      const T* xb = xdbl + b * L * 4 * RN2;
      T* dub = du + b * L * Di + d0;
      T* dBCb = dBC + (blk * s.Bsz + b) * L * 4 * 2 * N;
      for (int k = 0; k < 4; ++k) {
        const T* dtb = dt + (k * s.Bsz + b) * L * Di + d0;
        T* ddtb = ddt + (k * s.Bsz + b) * L * Di + d0;
        const T* Ak = A + k * N * Di + d0;
        const T* Dk = D + k * Di + d0;
        const T* biask = bias + k * Di + d0;
        T* dAk = dA + (b * 4 + k) * N * Di + d0;
        T* dDk = dD + (b * 4 + k) * Di + d0;
        T* dbk = dbias + (b * 4 + k) * Di + d0;
        const Order order(k, s.H, s.W);
        T* h = hbuf.data();
        std::fill(hbuf.begin(), hbuf.end(), T(0));
        order.each([&](int64_t t, int64_t p) {
          const T* up = ub + p * Di;
          const T* dtp = dtb + p * Di;
          const T* BC = xb + p * 4 * RN2 + k * RN2 + R;
          T* dl = buf_delta.data() + t * kBlock;
          T* sg = buf_sig.data() + t * kBlock;
          T* at = buf_a.data() + t * N * kBlock;
          T* ht = buf_h.data() + t * N * kBlock;
          T duv[kBlock];
          step_in(nd, dtp, biask, up, dl, duv, sg);
          for (int64_t n = 0; n < N; ++n) {
            const T Bn = BC[n];
            const T* An = Ak + n * Di;
            T* hn = h + n * kBlock;
            T* an = at + n * kBlock;
            T* htn = ht + n * kBlock;
#pragma omp simd
            for (int64_t d = 0; d < nd; ++d) {
              const T a = vexp(dl[d] * An[d]);
              const T v = a * hn[d] + duv[d] * Bn;
              hn[d] = v;
              an[d] = a;
              htn[d] = v;
            }
          }
        });
        // reverse pass: g_t = dy_t C_t + a_{t+1} g_{t+1}; carry = a_t g_t
        T* carry = gbuf.data();
        std::fill(gbuf.begin(), gbuf.end(), T(0));
        std::vector<T> accAn(N * kBlock, T(0));
        T accD[kBlock], accb[kBlock];
        std::fill(accD, accD + kBlock, T(0));
        std::fill(accb, accb + kBlock, T(0));
        const bool first = k == 0;
        order.each_reversed([&](int64_t t, int64_t p) {
          const T* up = ub + p * Di;
          const T* dyp = dyb + p * Di;
          const T* BC = xb + p * 4 * RN2 + k * RN2 + R;
          const T* dl = buf_delta.data() + t * kBlock;
          const T* sg = buf_sig.data() + t * kBlock;
          const T* at = buf_a.data() + t * N * kBlock;
          const T* ht = buf_h.data() + t * N * kBlock;
          const T* hprev = t > 0 ? ht - N * kBlock : zeros.data();
          T* dBCp = dBCb + p * 4 * 2 * N + k * 2 * N;
          T* dup = dub + p * Di;
          T* ddtp = ddtb + p * Di;
          T ddl[kBlock], dua[kBlock];  // d(delta), du over the states
#pragma omp simd
          for (int64_t d = 0; d < nd; ++d) {
            ddl[d] = 0;
            dua[d] = Dk[d] * dyp[d];
          }
          for (int64_t n = 0; n < N; ++n) {
            const T Bn = BC[n], Cn = BC[N + n];
            const T* an = at + n * kBlock;
            const T* hn = ht + n * kBlock;
            const T* hpn = hprev + n * kBlock;
            const T* Akn = Ak + n * Di;
            T* cn = carry + n * kBlock;
            T* dAn = accAn.data() + n * kBlock;
            T sB = 0, sC = 0;
#pragma omp simd reduction(+ : sB, sC)
            for (int64_t d = 0; d < nd; ++d) {
              const T g = dyp[d] * Cn + cn[d];
              const T gha = g * hpn[d] * an[d];
              const T gdl = g * dl[d];
              sC += dyp[d] * hn[d];
              sB += gdl * up[d];
              ddl[d] += g * up[d] * Bn + gha * Akn[d];
              dAn[d] += gha * dl[d];
              dua[d] += gdl * Bn;
              cn[d] = an[d] * g;
            }
            dBCp[n] = sB;
            dBCp[N + n] = sC;
          }
#pragma omp simd
          for (int64_t d = 0; d < nd; ++d) {
            const T dz = ddl[d] * sg[d];
            ddtp[d] = dz;
            accb[d] += dz;
            accD[d] += dyp[d] * up[d];
          }
          if (first) {
#pragma omp simd
            for (int64_t d = 0; d < nd; ++d) dup[d] = dua[d];
          } else {
#pragma omp simd
            for (int64_t d = 0; d < nd; ++d) dup[d] += dua[d];
          }
        });
        for (int64_t d = 0; d < nd; ++d) {
          dDk[d] = accD[d];
          dbk[d] = accb[d];
          for (int64_t n = 0; n < N; ++n) dAk[n * Di + d] = accAn[n * kBlock + d];
        }
      }
    }
  });
}

void check(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), "ss2d_cpu: ", name,
              " must be a contiguous CPU tensor");
}

torch::Tensor forward(torch::Tensor u, torch::Tensor wdt, torch::Tensor xdbl,
                      torch::Tensor A, torch::Tensor D, torch::Tensor bias) {
  for (auto* t : {&u, &wdt, &xdbl, &A, &D, &bias}) check(*t, "every input");
  const Shapes s = shapes_of(u, xdbl, A);
  auto y = torch::empty_like(u);
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "ss2d_cpu_forward", [&] {
    forward_impl<scalar_t>(s, u.data_ptr<scalar_t>(), wdt.data_ptr<scalar_t>(),
                           xdbl.data_ptr<scalar_t>(), A.data_ptr<scalar_t>(),
                           D.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(),
                           y.data_ptr<scalar_t>());
  });
  return y;
}

std::vector<torch::Tensor> backward(torch::Tensor u, torch::Tensor dt,
                                    torch::Tensor xdbl, torch::Tensor A,
                                    torch::Tensor D, torch::Tensor bias,
                                    torch::Tensor dy) {
  for (auto* t : {&u, &dt, &xdbl, &A, &D, &bias, &dy}) check(*t, "every input");
  const Shapes s = shapes_of(u, xdbl, A);
  auto du = torch::empty_like(u);
  auto ddt = torch::empty_like(dt);
  auto dBC = torch::empty({s.nblk, s.Bsz, s.H, s.W, 4, 2 * s.N}, u.options());
  auto dA = torch::empty({s.Bsz, 4, s.N, s.Di}, u.options());
  auto dD = torch::empty({s.Bsz, 4, s.Di}, u.options());
  auto dbias = torch::empty({s.Bsz, 4, s.Di}, u.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "ss2d_cpu_backward", [&] {
    backward_impl<scalar_t>(
        s, u.data_ptr<scalar_t>(), dt.data_ptr<scalar_t>(),
        xdbl.data_ptr<scalar_t>(), A.data_ptr<scalar_t>(),
        D.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(),
        dy.data_ptr<scalar_t>(), du.data_ptr<scalar_t>(),
        ddt.data_ptr<scalar_t>(), dBC.data_ptr<scalar_t>(),
        dA.data_ptr<scalar_t>(), dD.data_ptr<scalar_t>(),
        dbias.data_ptr<scalar_t>());
  });
  return {du, ddt, dBC.sum(0), dA.sum(0), dD.sum(0), dbias.sum(0)};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "SS2D selective scan, four directions (CPU)");
  m.def("backward", &backward, "its gradients");
}
