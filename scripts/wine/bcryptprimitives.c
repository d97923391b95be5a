/*
 * A stand-in for Windows' bcryptprimitives.dll, for the smoke under wine only (never
 * shipped). Rust's standard library (1.78 and later) takes its randomness from
 * ProcessPrng in bcryptprimitives.dll, present on every Windows 10 and later; Debian 12's
 * wine 8.0 has no such DLL, so without this no Rust-built Windows binary loads there
 * ("Module not found"). ProcessPrng is answered from RtlGenRandom (SystemFunction036).
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG len);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
  while (len > 0) {
    ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
    if (!SystemFunction036(data, n)) return FALSE;
    data += n;
    len -= n;
  }
  return TRUE;
}
