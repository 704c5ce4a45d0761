// Preloaded with --import: shows the loader the platform and CPU named by FAKE_PLATFORM/FAKE_ARCH.
if (process.env.FAKE_PLATFORM) Object.defineProperty(process, 'platform', { value: process.env.FAKE_PLATFORM })
if (process.env.FAKE_ARCH) Object.defineProperty(process, 'arch', { value: process.env.FAKE_ARCH })
