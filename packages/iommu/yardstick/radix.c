/*
 * The yardstick for dmasim's IO page table: a plain 4-level radix table of 512-entry tables, one
 * 64-bit PTE per 4 KiB page, tables allocated on demand (4 KiB-aligned, zeroed), the table address
 * and flag bits in the entry as in VT-d / AMD v1 / ARM LPAE formats. Nothing else: no argument
 * checks, no counters, no IOTLB, no large leaves, no freeing of tables by unmap (a table emptied by
 * unmap stays linked, as dmasim's and the kernel's do). The only check is the one every real table
 * makes: a map onto a present leaf fails (-EEXIST).
 *
 * Usage: radix [pages]   (default 1048576 = 4 GiB)
 * Runs, on one fresh table: map one call per page, unmap one call per page, remap the whole range in
 * one call. Prints one line "map_ns unmap_ns remap_ns tables map_cpu_ns unmap_cpu_ns remap_cpu_ns"
 * (elapsed time, then the process's CPU time) and verifies the result.
 *
 * Build: cc -O2 -o radix radix.c
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ENTRIES 512
#define LEVELS 4
#define PAGE_SHIFT 12
#define PAGE_SIZE (1ULL << PAGE_SHIFT)
#define PTE_VALID 1ULL
#define PTE_LEAF 2ULL
#define PTE_FLAGS 4095ULL

typedef uint64_t pte_t;

struct pt {
	pte_t *root;
	uint64_t tables;
};

static pte_t *alloc_table(struct pt *pt)
{
	void *p = NULL;
	if (posix_memalign(&p, PAGE_SIZE, ENTRIES * sizeof(pte_t)) != 0)
		abort();
	memset(p, 0, ENTRIES * sizeof(pte_t));
	pt->tables++;
	return p;
}

static unsigned idx(uint64_t iova, int level)
{
	return (iova >> (PAGE_SHIFT + 9 * (level - 1))) & (ENTRIES - 1);
}

/* The leaf table holding iova, linking fresh tables on the way. */
static pte_t *leaf_table(struct pt *pt, uint64_t iova)
{
	pte_t *t = pt->root;
	for (int l = LEVELS; l > 1; l--) {
		pte_t *slot = &t[idx(iova, l)];
		if (*slot == 0)
			*slot = (pte_t)(uintptr_t)alloc_table(pt) | PTE_VALID;
		t = (pte_t *)(uintptr_t)(*slot & ~PTE_FLAGS);
	}
	return t;
}

/* One 4 KiB page: a call, as iommu_map of one page is (noinline: a library call, not a macro). */
__attribute__((noinline)) int map_page(struct pt *pt, uint64_t iova, uint64_t phys, unsigned prot)
{
	pte_t *t = leaf_table(pt, iova);
	pte_t *e = &t[idx(iova, 1)];
	if (*e != 0)
		return -EEXIST;
	*e = phys | PTE_VALID | PTE_LEAF | ((pte_t)prot << 2);
	return 0;
}

/* [iova, iova + size) in one call: one walk per leaf table, then a run of PTEs to its end. */
__attribute__((noinline)) int map_range(struct pt *pt, uint64_t iova, uint64_t phys, uint64_t size, unsigned prot)
{
	pte_t flags = PTE_VALID | PTE_LEAF | ((pte_t)prot << 2);
	while (size > 0) {
		pte_t *t = leaf_table(pt, iova);
		unsigned i0 = idx(iova, 1);
		uint64_t n = ENTRIES - i0;
		if (n > size >> PAGE_SHIFT)
			n = size >> PAGE_SHIFT;
		for (uint64_t i = 0; i < n; i++) {
			if (t[i0 + i] != 0)
				return -EEXIST;
			t[i0 + i] = (phys + (i << PAGE_SHIFT)) | flags;
		}
		iova += n << PAGE_SHIFT;
		phys += n << PAGE_SHIFT;
		size -= n << PAGE_SHIFT;
	}
	return 0;
}

/* Clears the leaf of one page; returns the bytes unmapped (0 for a hole). */
__attribute__((noinline)) uint64_t unmap_page(struct pt *pt, uint64_t iova)
{
	pte_t *t = pt->root;
	for (int l = LEVELS; l > 1; l--) {
		pte_t e = t[idx(iova, l)];
		if (e == 0)
			return 0;
		t = (pte_t *)(uintptr_t)(e & ~PTE_FLAGS);
	}
	pte_t *e = &t[idx(iova, 1)];
	if (*e == 0)
		return 0;
	*e = 0;
	return PAGE_SIZE;
}

static uint64_t lookup(struct pt *pt, uint64_t iova)
{
	pte_t *t = pt->root;
	for (int l = LEVELS; l >= 1; l--) {
		pte_t e = t[idx(iova, l)];
		if (e == 0)
			return 0;
		if (l == 1)
			return e;
		t = (pte_t *)(uintptr_t)(e & ~PTE_FLAGS);
	}
	return 0;
}

static void free_tables(pte_t *t, int l)
{
	if (l > 1)
		for (unsigned i = 0; i < ENTRIES; i++)
			if (t[i] != 0)
				free_tables((pte_t *)(uintptr_t)(t[i] & ~PTE_FLAGS), l - 1);
	free(t);
}

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Elapsed time and CPU time; CPU time is what a machine shared with other jobs does not inflate much. */
struct stamp {
	uint64_t wall, cpu;
};

static struct stamp now(void)
{
	struct stamp s = { clock_ns(CLOCK_MONOTONIC), clock_ns(CLOCK_PROCESS_CPUTIME_ID) };
	return s;
}

int main(int argc, char **argv)
{
	uint64_t pages = argc > 1 ? strtoull(argv[1], NULL, 0) : 1048576;
	const uint64_t phys = 1ULL << 32, phys2 = 1ULL << 34;
	const unsigned rw = 3;
	struct pt pt = { 0, 0 };
	pt.root = alloc_table(&pt);
	uint64_t bad = 0, unmapped = 0;

	struct stamp t0 = now();
	for (uint64_t i = 0; i < pages; i++)
		bad += map_page(&pt, i << PAGE_SHIFT, phys + (i << PAGE_SHIFT), rw) != 0;
	struct stamp t1 = now();
	if (lookup(&pt, (pages / 2) << PAGE_SHIFT) != ((phys + ((pages / 2) << PAGE_SHIFT)) | PTE_VALID | PTE_LEAF | (rw << 2)))
		bad++;
	struct stamp t2 = now();
	for (uint64_t i = 0; i < pages; i++)
		unmapped += unmap_page(&pt, i << PAGE_SHIFT);
	struct stamp t3 = now();
	if (unmapped != pages << PAGE_SHIFT || lookup(&pt, 0) != 0)
		bad++;
	struct stamp t4 = now();
	bad += map_range(&pt, 0, phys2, pages << PAGE_SHIFT, rw) != 0;
	struct stamp t5 = now();
	if (lookup(&pt, (pages - 1) << PAGE_SHIFT) != ((phys2 + ((pages - 1) << PAGE_SHIFT)) | PTE_VALID | PTE_LEAF | (rw << 2)))
		bad++;
	uint64_t tables = pt.tables;
	free_tables(pt.root, LEVELS);
	if (bad != 0) {
		fprintf(stderr, "radix: %llu wrong results\n", (unsigned long long)bad);
		return 1;
	}
	printf("%llu %llu %llu %llu %llu %llu %llu\n", (unsigned long long)(t1.wall - t0.wall), (unsigned long long)(t3.wall - t2.wall),
	       (unsigned long long)(t5.wall - t4.wall), (unsigned long long)tables, (unsigned long long)(t1.cpu - t0.cpu),
	       (unsigned long long)(t3.cpu - t2.cpu), (unsigned long long)(t5.cpu - t4.cpu));
	return 0;
}
