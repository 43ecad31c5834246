#pragma once
/// @file
/// Every scheduler specialization and fd::AnyScheduler (one line per scheduler).

#include "fd/schedulers/scheduler.hpp"

#include "fd/schedulers/ddim.hpp"
#include "fd/schedulers/ddpm.hpp"
#include "fd/schedulers/dpmpp_2m.hpp"
#include "fd/schedulers/euler.hpp"
#include "fd/schedulers/euler_ancestral.hpp"
#include "fd/schedulers/pndm.hpp"

#include "fd/schedulers/any_scheduler.hpp"
