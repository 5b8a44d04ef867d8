// For the GPU tests built for the CPU emulation: whether every ldmatrix and
// cp.async so far took one shared-memory wavefront per phase
// (tests/emu/cuda_emu.h counts them). Include after tap.h.
#ifdef SIGMA_EMU
static void ok_no_bank_conflicts(void)
{
    const char *what[2] = {"ldmatrix", "cp.async stores"};
    for (int kind = 0; kind < 2; kind++)
        ok(emu::bank_extra[kind] == 0, "shared memory: %s without bank conflicts (%ld phases, %ld extra wavefronts)", what[kind],
           emu::bank_phases[kind], emu::bank_extra[kind]);
}
#endif
