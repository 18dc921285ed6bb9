// The SS2D selective scan on a CPU: all four directions of a (B, H, W, Di)
// channel-last map in one pass, forward and backward. Built at first use by
// kernels/ss2d/cpu.py (torch.utils.cpp_extension.load), which also does the
// projections (matmuls) around it; kernels/ss2d/reference.py is the specification.
//
// Per direction k, channel d and position t of the direction's order
// (row-major, column-major, and both reversed, over the same buffers):
//   dt    = sum_r x_dbl[t, k, r] * Wdt[k, r, d]   (the dt projection)
//   delta = softplus(dt + bias[k, d])
//   h[n]  = exp(delta * A[k, n, d]) * h[n] + delta * u[t, d] * Bs[t, k, n]
//   y[t, d] += sum_n Cs[t, k, n] * h[n] + D[k, d] * u[t, d]
// Time runs sequentially; channels are the vector lanes (contiguous in the
// channel-last layout), so no direction is ever copied or flipped. One task
// scans one group of G vectors of channels (one or two cache lines) through all
// four directions; its states, and for d_state 1 its A, stay in registers.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

// GCC/Clang vector extensions: element-wise arithmetic, comparisons and
// selects. float: 64-byte vectors where the build machine has AVX-512 (one
// register; 1.6x faster than two 32-byte ones on a Xeon with AVX-512), else
// 32 bytes (one AVX register, two SSE or NEON registers; on an AVX2-only
// Zen 1, 64 bytes ran 2.4x slower).
#if defined(__AVX512F__)
constexpr int kFloatBytes = 64;
#else
constexpr int kFloatBytes = 32;
#endif
template <typename T>
struct Vec;
template <>
struct Vec<float> {
  typedef float V __attribute__((vector_size(kFloatBytes)));
  typedef int32_t I __attribute__((vector_size(kFloatBytes)));
  static constexpr int lanes = kFloatBytes / 4;
};
template <>
struct Vec<double> {
  typedef double V __attribute__((vector_size(32)));
  static constexpr int lanes = 4;
};

template <typename V, typename T>
inline V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V, typename T>
inline void store(T* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}
template <typename V, typename T>
inline V splat(T s) {
  return V{} + s;
}

using VF = Vec<float>::V;
using VI = Vec<float>::I;
using D4 = Vec<double>::V;

// (always inlined: a call would pass these packs through memory)
#define INL inline __attribute__((always_inline))

// M independent vectors (channel groups and time steps) that every
// operation below runs on in turn, so the long dependency chains of exp and
// log interleave instead of waiting on one another.
template <typename V, int M>
struct Pk {
  V v[M];
  V& operator[](int m) { return v[m]; }
  const V& operator[](int m) const { return v[m]; }
};

template <typename V>
using Elem = std::remove_reference_t<decltype(V{}[0])>;
template <typename V>
using Mask = decltype(V{} < V{});

#define PK_OP(op)                                                          \
  template <typename V, int M>                                             \
  INL Pk<V, M> operator op(const Pk<V, M>& a, const Pk<V, M>& b) {      \
    Pk<V, M> r;                                                            \
    for (int m = 0; m < M; ++m) r[m] = a[m] op b[m];                       \
    return r;                                                              \
  }                                                                        \
  template <typename V, int M>                                             \
  INL Pk<V, M> operator op(const Pk<V, M>& a, Elem<V> b) {              \
    Pk<V, M> r;                                                            \
    for (int m = 0; m < M; ++m) r[m] = a[m] op b;                          \
    return r;                                                              \
  }                                                                        \
  template <typename V, int M>                                             \
  INL Pk<V, M> operator op(Elem<V> a, const Pk<V, M>& b) {              \
    Pk<V, M> r;                                                            \
    for (int m = 0; m < M; ++m) r[m] = a op b[m];                          \
    return r;                                                              \
  }
PK_OP(+)
PK_OP(-)
PK_OP(*)
PK_OP(/)
#undef PK_OP

#define PK_CMP(name, op)                                                   \
  template <typename V, int M>                                             \
  INL Pk<Mask<V>, M> name(const Pk<V, M>& a, Elem<V> b) {               \
    Pk<Mask<V>, M> r;                                                      \
    for (int m = 0; m < M; ++m) r[m] = a[m] op b;                          \
    return r;                                                              \
  }
PK_CMP(lt, <)
PK_CMP(gt, >)
PK_CMP(ge, >=)
PK_CMP(eq, ==)
#undef PK_CMP

// c ? a : b, lane by lane
template <typename I, typename V, int M>
INL Pk<V, M> sel(const Pk<I, M>& c, const Pk<V, M>& a, const Pk<V, M>& b) {
  Pk<V, M> r;
  for (int m = 0; m < M; ++m) r[m] = c[m] ? a[m] : b[m];
  return r;
}
template <typename V, int M>
INL Pk<V, M> bcast(Elem<V> s) {
  Pk<V, M> r;
  for (int m = 0; m < M; ++m) r[m] = V{} + s;
  return r;
}

// 2^n * p for whole n (as floats): the exponent field built directly, or
// one vscalefps with AVX-512.
INL VF ldexp_vec(VF p, VF n) {
#if defined(__AVX512F__)
  return (VF)_mm512_scalef_ps((__m512)p, (__m512)n);
#else
  const VI bits = (__builtin_convertvector(n, VI) + 127) << 23;
  return p * (VF)bits;
#endif
}

// exp(x) for x <= 0 in float32 (every exp here is of a non-positive number:
// -|z| in softplus and delta * A, delta >= 0, A < 0): x = n ln2 + r with
// |r| <= ln2 / 2 (ln2 in two parts), e^r = 1 + r + r^2 P(r), P a degree-4
// minimax fit (7.6e-8 relative error in float32); x below -87 is taken as
// -87 (e^-87 ~ 1.6e-38, the smallest normal float). float64 (gradcheck and
// the float64 tests) maps libm over the lanes.
template <int M>
INL Pk<VF, M> vexp(Pk<VF, M> x) {
  using P = Pk<VF, M>;
  x = sel(lt(x, -87.0f), bcast<VF, M>(-87.0f), x);
  // round to nearest: 1.5 * 2^23 pushes the fraction out of the mantissa
  P n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  P r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  P p = bcast<VF, M>(1.3814581325e-3f);
  p = p * r + 8.3686970174e-3f;
  p = p * r + 4.1668388993e-2f;
  p = p * r + 1.6666521132e-1f;
  p = p * r + 4.9999994040e-1f;
  p = p * r * r + r + 1.0f;
  for (int m = 0; m < M; ++m) p[m] = ldexp_vec(p[m], n[m]);
  return p;
}

// log1p(v) for v in [0, 1] (v = e^-|z| in softplus) in float32: v Q(v), Q a
// degree-8 minimax fit of log1p(v) / v, so the relative error (2.1e-7 in
// float32) holds down to the smallest v, where log1p(v) ~ v.
template <int M>
INL Pk<VF, M> vlog1p_01(const Pk<VF, M>& v) {
  using P = Pk<VF, M>;
  P q = bcast<VF, M>(5.2325520664e-3f);
  q = q * v - 2.9504360631e-2f;
  q = q * v + 7.8223936260e-2f;
  q = q * v - 1.3663014770e-1f;
  q = q * v + 1.9105862081e-1f;
  q = q * v - 2.4842932820e-1f;
  q = q * v + 3.3319088817e-1f;
  q = q * v - 4.9999493361e-1f;
  q = q * v + 9.9999994040e-1f;
  return q * v;
}

template <int M>
INL Pk<D4, M> vexp(Pk<D4, M> x) {
  for (int m = 0; m < M; ++m)
    for (int i = 0; i < Vec<double>::lanes; ++i) x[m][i] = std::exp(x[m][i]);
  return x;
}
template <int M>
INL Pk<D4, M> vlog1p_01(Pk<D4, M> x) {
  for (int m = 0; m < M; ++m)
    for (int i = 0; i < Vec<double>::lanes; ++i)
      x[m][i] = std::log1p(x[m][i]);
  return x;
}

// softplus(z) = max(z, 0) + log1p(exp(-|z|)) (torch's threshold 20: z
// itself above it), and in `sig` its derivative sigmoid(z).
template <typename V, int M>
INL Pk<V, M> softplus(const Pk<V, M>& z) {
  const Pk<V, M> zero = bcast<V, M>(0);
  const Pk<V, M> e = vexp(sel(lt(z, 0), z, zero - z));
  const Pk<V, M> sp = sel(gt(z, 0), z, zero) + vlog1p_01(e);
  return sel(gt(z, 20), z, sp);
}
template <typename V, int M>
INL Pk<V, M> softplus(const Pk<V, M>& z, Pk<V, M>& sig) {
  const Pk<V, M> zero = bcast<V, M>(0), one = bcast<V, M>(1);
  const Pk<V, M> e = vexp(sel(lt(z, 0), z, zero - z));
  const Pk<V, M> sp = sel(gt(z, 0), z, zero) + vlog1p_01(e);
  const Pk<V, M> inv = one / (one + e);
  sig = sel(gt(z, 20), one, sel(ge(z, 0), inv, e * inv));
  return sel(gt(z, 20), z, sp);
}

template <typename V>
INL Elem<V> hsum(V v) {
  Elem<V> s = v[0];
  for (int i = 1; i < int(sizeof(V) / sizeof(s)); ++i) s += v[i];
  return s;
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
  // f(t0, ps, cnt): the positions of steps t0 .. t0 + cnt - 1 (cnt <= TS;
  // ps[cnt..TS) repeat a valid position)
  template <int TS, typename F>
  inline void chunks(F f) const {
    int64_t ps[TS];
    int cnt = 0;
    int64_t t0 = 0;
    each([&](int64_t t, int64_t p) {
      ps[cnt++] = p;
      if (cnt == TS) {
        f(t0, ps, cnt);
        t0 = t + 1;
        cnt = 0;
      }
    });
    if (cnt) {
      for (int j = cnt; j < TS; ++j) ps[j] = ps[0];
      f(t0, ps, cnt);
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

// A task scans G vectors of channels (16 float channels with AVX2, 32 with
// AVX-512); the exp and log of TS steps and G vectors (M vectors) run
// interleaved before their (cheap) sequential recurrence. TS = 2 measured
// best (1 and 4: slower, 4 spills registers).
constexpr int G = 2, TS = 2, M = G * TS;

struct Shapes {
  int64_t Bsz, H, W, L, Di, N, R, RN2;
  int parts;  // the four directions split over this many tasks (1, 2, 4)
};

// Task i of Bsz * ngrp * parts: batch b, channel group grp, and the part of
// the directions (k0 <= k < k1) it scans into output `part`.
struct Task {
  int part, k0, k1;
  int64_t b, grp;
  Task(const Shapes& s, int64_t ngrp, int64_t i)
      : part(int(i % s.parts)),
        k0(part * 4 / s.parts),
        k1((part + 1) * 4 / s.parts),
        b(i / s.parts / ngrp),
        grp(i / s.parts % ngrp) {}
};

// Channels padded with zeros to whole groups (zero channels stay zero
// through the scan and add nothing to the sums over channels).
int64_t group_width(const torch::Tensor& t) {
  return G * (t.scalar_type() == torch::kFloat ? Vec<float>::lanes
                                               : Vec<double>::lanes);
}
Shapes shapes_of(const torch::Tensor& u, const torch::Tensor& xdbl,
                 const torch::Tensor& A) {
  Shapes s;
  s.Bsz = u.size(0);
  s.H = u.size(1);
  s.W = u.size(2);
  s.L = s.H * s.W;
  s.Di = u.size(3);  // a multiple of the group width (padded)
  s.N = A.size(1);
  s.RN2 = xdbl.size(3) / 4;
  s.R = s.RN2 - 2 * s.N;
  // one task per (batch, channel group) unless that leaves threads idle:
  // then the directions split too, each part summing into its own output
  // (batch 1, stage 1 of VMamba-T: 3 or 6 groups)
  const int64_t tasks = s.Bsz * (s.Di / group_width(u));
  const int64_t threads = at::get_num_threads();
  s.parts = 1;
  while (threads > 1 && s.parts < 4 && tasks * s.parts < 2 * threads)
    s.parts *= 2;
  return s;
}

// u (B, H, W, Di); xdbl (B, H, W, 4 * (R + 2N)): per direction the R dt
// inputs, then Bs and Cs; wdt (4, R, Di): the dt projection, transposed;
// A (4, N, Di) = -exp(A_logs); D, bias (4, Di). Writes y (B, H, W, Di).
// NS: d_state known at compile time (its states and A in registers), or 0.
template <typename T, int NS>
void forward_impl(const Shapes& s, const T* u, const T* wdt, const T* xdbl,
                  const T* A, const T* D, const T* bias, T* y) {
  using V = typename Vec<T>::V;
  using P = Pk<V, M>;
  constexpr int NL = Vec<T>::lanes, CW = G * NL;
  const int64_t Di = s.Di, N = NS ? NS : s.N, L = s.L, RN2 = s.RN2, R = s.R;
  const int64_t ngrp = Di / CW;
  at::parallel_for(0, s.Bsz * ngrp * s.parts, 1, [&](int64_t begin,
                                                     int64_t end) {
    std::vector<V> hdyn(N * G);
    for (int64_t i = begin; i < end; ++i) {
      const Task task(s, ngrp, i);
      const int64_t b = task.b, d0 = task.grp * CW;
      const T* ub = u + b * L * Di + d0;
      const T* xb = xdbl + b * L * 4 * RN2;
      T* yb = y + (task.part * s.Bsz + b) * L * Di + d0;
      for (int k = task.k0; k < task.k1; ++k) {
        const T* wk = wdt + k * R * Di + d0;
        const T* Ak = A + k * N * Di + d0;
        V bk[G], Dk[G], h1[G];
        P A1;  // d_state 1: A for every (step, group)
        for (int g = 0; g < G; ++g) {
          bk[g] = load<V>(bias + k * Di + d0 + g * NL);
          Dk[g] = load<V>(D + k * Di + d0 + g * NL);
          h1[g] = V{};
          for (int j = 0; j < TS; ++j) A1[j * G + g] = load<V>(Ak + g * NL);
        }
        V* h = NS == 1 ? h1 : hdyn.data();
        std::fill(hdyn.begin(), hdyn.end(), V{});
        const bool first = k == task.k0;
        Order(k, s.H, s.W).chunks<TS>([&](int64_t, const int64_t* ps,
                                          int cnt) {
          const T* xr[TS];
          P z, uu;
          for (int j = 0; j < TS; ++j) {
            xr[j] = xb + ps[j] * 4 * RN2 + k * RN2;
            for (int g = 0; g < G; ++g) {
              z[j * G + g] = bk[g];
              uu[j * G + g] = load<V>(ub + ps[j] * Di + g * NL);
            }
          }
          for (int64_t r = 0; r < R; ++r) {
            V w[G];
            for (int g = 0; g < G; ++g) w[g] = load<V>(wk + r * Di + g * NL);
            for (int j = 0; j < TS; ++j) {
              const T xv = xr[j][r];
              for (int g = 0; g < G; ++g) z[j * G + g] += xv * w[g];
            }
          }
          const P dl = softplus(z);
          const P du = dl * uu;
          P acc;
          for (int j = 0; j < TS; ++j)
            for (int g = 0; g < G; ++g) acc[j * G + g] = Dk[g] * uu[j * G + g];
          for (int64_t n = 0; n < N; ++n) {
            P An;
            if (NS == 1) {
              An = A1;
            } else {
              for (int g = 0; g < G; ++g) {
                const V a = load<V>(Ak + n * Di + g * NL);
                for (int j = 0; j < TS; ++j) An[j * G + g] = a;
              }
            }
            const P a = vexp(dl * An);
            for (int j = 0; j < cnt; ++j) {
              const T Bn = xr[j][R + n], Cn = xr[j][R + N + n];
              for (int g = 0; g < G; ++g) {
                const V v = a[j * G + g] * h[n * G + g] + du[j * G + g] * Bn;
                h[n * G + g] = v;
                acc[j * G + g] += Cn * v;
              }
            }
          }
          for (int j = 0; j < cnt; ++j) {
            for (int g = 0; g < G; ++g) {
              T* yg = yb + ps[j] * Di + g * NL;
              store(yg, first ? acc[j * G + g] : load<V>(yg) + acc[j * G + g]);
            }
          }
        });
      }
    }
  });
}

// Gradients. dy (B, H, W, Di). Outputs: du (B, H, W, Di) (the scan's part:
// through delta*u and D*u); ddt (4, B, H, W, Di) (w.r.t. dt + bias);
// dBC (ngrp, B, H, W, 4, 2N) per-channel-group partial sums of dBs, dCs;
// dA, dD, dbias per batch (B, 4, N, Di), (B, 4, Di), (B, 4, Di).
template <typename T, int NS>
void backward_impl(const Shapes& s, const T* u, const T* dt, const T* xdbl,
                   const T* A, const T* D, const T* bias, const T* dy, T* du,
                   T* ddt, T* dBC, T* dA, T* dD, T* dbias) {
  using V = typename Vec<T>::V;
  using P = Pk<V, M>;
  constexpr int NL = Vec<T>::lanes, CW = G * NL;
  const int64_t Di = s.Di, N = NS ? NS : s.N, L = s.L, RN2 = s.RN2, R = s.R;
  const int64_t ngrp = Di / CW;
  at::parallel_for(0, s.Bsz * ngrp * s.parts, 1, [&](int64_t begin,
                                                     int64_t end) {
    // per step t: delta, sigmoid, and per state a and h (recomputed here
    // instead of saved by the forward)
    std::vector<V> bdl(L * G), bsg(L * G), ba(L * N * G), bh(L * N * G);
    std::vector<V> hdyn(N * G), carry(N * G), accA(N * G);
    for (int64_t i = begin; i < end; ++i) {
      const Task task(s, ngrp, i);
      const int64_t b = task.b, grp = task.grp, d0 = grp * CW;
      const T* ub = u + b * L * Di + d0;
      const T* dyb = dy + b * L * Di + d0;
      const T* xb = xdbl + b * L * 4 * RN2;
      T* dub = du + (task.part * s.Bsz + b) * L * Di + d0;
      T* dBCb = dBC + (grp * s.Bsz + b) * L * 4 * 2 * N;
      for (int k = task.k0; k < task.k1; ++k) {
        const T* dtb = dt + (k * s.Bsz + b) * L * Di + d0;
        T* ddtb = ddt + (k * s.Bsz + b) * L * Di + d0;
        const T* Ak = A + k * N * Di + d0;
        V bk[G], Dk[G];
        for (int g = 0; g < G; ++g) {
          bk[g] = load<V>(bias + k * Di + d0 + g * NL);
          Dk[g] = load<V>(D + k * Di + d0 + g * NL);
        }
        const Order order(k, s.H, s.W);
        V* h = hdyn.data();
        std::fill(hdyn.begin(), hdyn.end(), V{});
        order.chunks<TS>([&](int64_t t0, const int64_t* ps, int cnt) {
          P z, uu;
          for (int j = 0; j < TS; ++j)
            for (int g = 0; g < G; ++g) {
              z[j * G + g] = load<V>(dtb + ps[j] * Di + g * NL) + bk[g];
              uu[j * G + g] = load<V>(ub + ps[j] * Di + g * NL);
            }
          P sg;
          const P dl = softplus(z, sg);
          const P du_ = dl * uu;
          for (int j = 0; j < cnt; ++j)
            for (int g = 0; g < G; ++g) {
              bdl[(t0 + j) * G + g] = dl[j * G + g];
              bsg[(t0 + j) * G + g] = sg[j * G + g];
            }
          for (int64_t n = 0; n < N; ++n) {
            P An;
            for (int g = 0; g < G; ++g) {
              const V a = load<V>(Ak + n * Di + g * NL);
              for (int j = 0; j < TS; ++j) An[j * G + g] = a;
            }
            const P a = vexp(dl * An);
            for (int j = 0; j < cnt; ++j) {
              const T Bn = xb[ps[j] * 4 * RN2 + k * RN2 + R + n];
              const int64_t t = t0 + j;
              for (int g = 0; g < G; ++g) {
                const V v = a[j * G + g] * h[n * G + g] + du_[j * G + g] * Bn;
                h[n * G + g] = v;
                ba[(t * N + n) * G + g] = a[j * G + g];
                bh[(t * N + n) * G + g] = v;
              }
            }
          }
        });
        // reverse: g_t = dy_t C_t + a_{t+1} g_{t+1}; carry = a_t g_t
        std::fill(carry.begin(), carry.end(), V{});
        std::fill(accA.begin(), accA.end(), V{});
        V accD[G], accb[G];
        for (int g = 0; g < G; ++g) accD[g] = accb[g] = V{};
        const bool first = k == task.k0;
        order.each_reversed([&](int64_t t, int64_t p) {
          const T* up = ub + p * Di;
          const T* dyp = dyb + p * Di;
          const T* BC = xb + p * 4 * RN2 + k * RN2 + R;
          T* dBCp = dBCb + p * 4 * 2 * N + k * 2 * N;
          V uu[G], dyv[G], dl[G], ddl[G], dua[G];
          for (int g = 0; g < G; ++g) {
            uu[g] = load<V>(up + g * NL);
            dyv[g] = load<V>(dyp + g * NL);
            dl[g] = bdl[t * G + g];
            ddl[g] = V{};
            dua[g] = Dk[g] * dyv[g];
          }
          for (int64_t n = 0; n < N; ++n) {
            const T Bn = BC[n], Cn = BC[N + n];
            V sB = V{}, sC = V{};
            for (int g = 0; g < G; ++g) {
              const int64_t i = (t * N + n) * G + g;
              const V a = ba[i], hv = bh[i];
              const V hp = t > 0 ? bh[i - N * G] : V{};
              const V gr = dyv[g] * Cn + carry[n * G + g];
              const V gha = gr * hp * a;
              const V gdl = gr * dl[g];
              sC += dyv[g] * hv;
              sB += gdl * uu[g];
              ddl[g] += gr * uu[g] * Bn +
                        gha * load<V>(Ak + n * Di + g * NL);
              accA[n * G + g] += gha * dl[g];
              dua[g] += gdl * Bn;
              carry[n * G + g] = a * gr;
            }
            dBCp[n] = hsum(sB);
            dBCp[N + n] = hsum(sC);
          }
          for (int g = 0; g < G; ++g) {
            const V dz = ddl[g] * bsg[t * G + g];
            store(ddtb + p * Di + g * NL, dz);
            accb[g] += dz;
            accD[g] += dyv[g] * uu[g];
            T* dug = dub + p * Di + g * NL;
            store(dug, first ? dua[g] : load<V>(dug) + dua[g]);
          }
        });
        for (int g = 0; g < G; ++g) {
          store(dD + (b * 4 + k) * Di + d0 + g * NL, accD[g]);
          store(dbias + (b * 4 + k) * Di + d0 + g * NL, accb[g]);
          for (int64_t n = 0; n < N; ++n)
            store(dA + ((b * 4 + k) * N + n) * Di + d0 + g * NL,
                  accA[n * G + g]);
        }
      }
    }
  });
}

void check(const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), "ss2d_cpu: ", name,
              " must be a contiguous CPU tensor");
}

torch::Tensor pad_channels(const torch::Tensor& t, int64_t cw) {
  const int64_t extra = (cw - t.size(-1) % cw) % cw;
  return extra ? torch::constant_pad_nd(t, {0, extra}) : t;
}

torch::Tensor forward(torch::Tensor u, torch::Tensor wdt, torch::Tensor xdbl,
                      torch::Tensor A, torch::Tensor D, torch::Tensor bias) {
  for (auto* t : {&u, &wdt, &xdbl, &A, &D, &bias}) check(*t, "every input");
  const int64_t Di = u.size(3), cw = group_width(u);
  u = pad_channels(u, cw);
  wdt = pad_channels(wdt, cw);
  A = pad_channels(A, cw);
  D = pad_channels(D, cw);
  bias = pad_channels(bias, cw);
  const Shapes s = shapes_of(u, xdbl, A);
  // one output per part of the directions, summed below
  auto y = torch::empty({s.parts, s.Bsz, s.H, s.W, s.Di}, u.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "ss2d_cpu_forward", [&] {
    using T = scalar_t;
    auto run = s.N == 1 ? forward_impl<T, 1> : forward_impl<T, 0>;
    run(s, u.data_ptr<T>(), wdt.data_ptr<T>(), xdbl.data_ptr<T>(),
        A.data_ptr<T>(), D.data_ptr<T>(), bias.data_ptr<T>(), y.data_ptr<T>());
  });
  y = s.parts == 1 ? y[0] : y.sum(0);
  return y.size(3) == Di ? y : y.narrow(3, 0, Di).contiguous();
}

std::vector<torch::Tensor> backward(torch::Tensor u, torch::Tensor dt,
                                    torch::Tensor xdbl, torch::Tensor A,
                                    torch::Tensor D, torch::Tensor bias,
                                    torch::Tensor dy) {
  for (auto* t : {&u, &dt, &xdbl, &A, &D, &bias, &dy}) check(*t, "every input");
  const int64_t Di = u.size(3), cw = group_width(u);
  u = pad_channels(u, cw);
  dt = pad_channels(dt, cw);
  A = pad_channels(A, cw);
  D = pad_channels(D, cw);
  bias = pad_channels(bias, cw);
  dy = pad_channels(dy, cw);
  const Shapes s = shapes_of(u, xdbl, A);
  const int64_t ngrp = s.Di / cw;
  auto du = torch::empty({s.parts, s.Bsz, s.H, s.W, s.Di}, u.options());
  auto ddt = torch::empty_like(dt);
  auto dBC = torch::empty({ngrp, s.Bsz, s.H, s.W, 4, 2 * s.N}, u.options());
  auto dA = torch::empty({s.Bsz, 4, s.N, s.Di}, u.options());
  auto dD = torch::empty({s.Bsz, 4, s.Di}, u.options());
  auto dbias = torch::empty({s.Bsz, 4, s.Di}, u.options());
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "ss2d_cpu_backward", [&] {
    using T = scalar_t;
    auto run = s.N == 1 ? backward_impl<T, 1> : backward_impl<T, 0>;
    run(s, u.data_ptr<T>(), dt.data_ptr<T>(), xdbl.data_ptr<T>(),
        A.data_ptr<T>(), D.data_ptr<T>(), bias.data_ptr<T>(),
        dy.data_ptr<T>(), du.data_ptr<T>(), ddt.data_ptr<T>(),
        dBC.data_ptr<T>(), dA.data_ptr<T>(), dD.data_ptr<T>(),
        dbias.data_ptr<T>());
  });
  auto unpad = [&](torch::Tensor t) {
    return t.size(-1) == Di ? t : t.narrow(-1, 0, Di).contiguous();
  };
  du = s.parts == 1 ? du[0] : du.sum(0);
  return {unpad(du),          unpad(ddt),          dBC.sum(0),
          unpad(dA.sum(0)),   unpad(dD.sum(0)),    unpad(dbias.sum(0))};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "SS2D selective scan, four directions (CPU)");
  m.def("backward", &backward, "its gradients");
}
