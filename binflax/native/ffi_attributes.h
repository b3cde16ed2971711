// The attributes every convolution handler of both native kernels (xnor_kernel.cc,
// int8_kernel.cc) binds, in binflax.native's order: the 2-D geometry and the code path.
// One list, so a handler cannot drift from the Python side's attribute names.
#ifndef BINFLAX_NATIVE_FFI_ATTRIBUTES_H_
#define BINFLAX_NATIVE_FFI_ATTRIBUTES_H_

// Appended to an ffi::Ffi::Bind() chain after its context, arguments and result.
#define BINFLAX_CONV_ATTRIBUTES \
  .Attr<int64_t>("kh")          \
      .Attr<int64_t>("kw")      \
      .Attr<int64_t>("sh")      \
      .Attr<int64_t>("sw")      \
      .Attr<int64_t>("dh")      \
      .Attr<int64_t>("dw")      \
      .Attr<int64_t>("top")     \
      .Attr<int64_t>("left")    \
      .Attr<int64_t>("isa")

#endif  // BINFLAX_NATIVE_FFI_ATTRIBUTES_H_
