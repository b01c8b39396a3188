# frozen_string_literal: true

module Kino
  # Explains, finding by finding, what keeps a Rack app from being
  # Ractor-shareable (so from running in mode :ractor): Check.report(app),
  # Check.print_report(app), Check.first_blocker(app).
  #
  # Read-only: it never freezes, never calls Ractor.make_shareable, never
  # mutates. Of the app's objects it calls only #inspect; everything else
  # (class, frozen?, ivars, iteration, Proc#binding) goes through core
  # methods bound to them, so overrides and BasicObject are no obstacle.
  module Check
    MAX_FINDINGS = 20
    MAX_NODES = 5_000 # objects walked at most
    MAX_DEPTH = 200   # deeper nesting counts as over budget (keeps the Ruby stack small)
    BRIEF = 60        # characters of #inspect kept in a finding
    HINTS = "hints: freeze configuration at boot; build procs with Kino.shareable_app " \
            "(or Ractor.shareable_proc on Ruby 4.0); keep per-worker resources " \
            "(DB connections, caches) in Ractor-local storage; or run mode :threaded"
    # Data (Ruby 3.2+) keeps its members out of instance variables.
    DATA_CLASS = defined?(::Data) && ::Data.respond_to?(:define) ? ::Data : nil
    # Never shareable, frozen or not (a type that becomes shareable in some
    # Ruby passes Ractor.shareable? and is never looked at).
    NATIVE = [Method, UnboundMethod, Binding, IO, Thread, Thread::Mutex, Thread::Queue,
              Thread::ConditionVariable].freeze
    NATIVE_REASON = "cannot cross ractors, frozen or not (create it in each worker, e.g. in Ractor-local storage)"
    private_constant :MAX_DEPTH, :BRIEF, :HINTS, :DATA_CLASS, :NATIVE, :NATIVE_REASON

    # One reason the app is not shareable: where (+path+) and why. Frozen
    # with frozen strings, so a Finding is itself Ractor-shareable.
    Finding = Struct.new(:path, :message, keyword_init: true) do
      def initialize(path:, message:)
        super(path: -(path.to_s), message: -(message.to_s))
        freeze
      end

      def to_s = "#{path} — #{message}"
    end

    # { shareable:, findings:, more:, cut: }. Shareable is
    # Ractor.shareable?(app), except for a Module/Class app: shareable iff
    # none of its class-level state would raise in a worker. At least one
    # finding whenever not shareable; at most MAX_FINDINGS, +more+ counts
    # the ones left out, and +cut+ is true when the walk stopped at its
    # object budget (there may be findings it never reached).
    def self.report(app)
      walk = Walk.new
      findings = walk.run(app).first(MAX_FINDINGS).freeze
      shareable = Module === app ? findings.empty? : Ractor.shareable?(app)
      { shareable: shareable, findings: findings, more: walk.count - findings.size, cut: walk.cut? }
    end

    # Prints the report to +io+ (plain text) and returns the shareable flag.
    def self.print_report(app, io = $stdout)
      result = report(app)
      if result[:shareable]
        io.puts "check: app is Ractor-shareable — mode :ractor will work"
      else
        io.puts "check: app is NOT Ractor-shareable"
        result[:findings].each { |finding| io.puts "  - #{finding}" }
        io.puts "  … and #{'at least ' if result[:cut]}#{result[:more]} more" if result[:more].positive?
        io.puts "  #{HINTS}"
      end
      result[:shareable]
    end

    # The first finding as a line, or nil when the app is shareable.
    def self.first_blocker(app) = report(app)[:findings].first&.to_s

    # One depth-first walk from the app. Objects are tracked by identity
    # (each walked once, so cycles end); the walk stops at MAX_NODES
    # objects or MAX_DEPTH levels. Past MAX_FINDINGS findings it only
    # counts them (#count), without describing them.
    class Walk
      # Every finding, described or only counted.
      attr_reader :count

      def initialize
        @seen = {}.compare_by_identity
        @findings = []
        @count = 0
        @depth = 0
      end

      # The findings for +app+: none when it is shareable (a non-Module),
      # at least one when it is not.
      def run(app)
        return module_findings(app) if Module === app
        return [] if Ractor.shareable?(app)

        visit(app, "app", nil)
        add("app", "not Ractor-shareable (Ractor.shareable? is false)") if @findings.empty?
        @findings
      end

      # True when the walk stopped at MAX_NODES objects.
      def cut? = @seen.size >= MAX_NODES

      private

      # Modules always pass Ractor.shareable?, but a worker reading their
      # unshareable ivars, or any class variable, raises, and so does a
      # call to a method defined with define_method and a block (Roda's
      # route block is one). Looks at nothing else: no constants, no
      # recursion.
      def module_findings(mod)
        core(Kernel, :instance_variables, mod).each do |name|
          value = core(Kernel, :instance_variable_get, mod, name)
          next if Ractor.shareable?(value)

          add("app.#{name}", "class-level ivar holds #{brief(value)} — classes pass Ractor.shareable?, " \
                             "but reading this from a worker ractor raises Ractor::IsolationError on the first request")
        end
        core(Module, :class_variables, mod).each do |name|
          add("app.#{name}", "class variable — worker ractors may not access class variables at all " \
                             "(Ractor::IsolationError on the first request that does)")
        end
        block_methods(mod).each do |label, owner|
          add("app#{label}", "defined with define_method and a block (in #{owner}) — a worker ractor " \
                             "calling it raises \"defined with an un-shareable Proc in a different Ractor\" " \
                             "unless the block was made shareable")
        end
        @findings
      end

      # [".name" or "#name", owner] for each method of +mod+ (its own
      # singleton methods; for a class, its instances' methods) whose body
      # is a block: define_method's. CRuby only (RubyVM::InstructionSequence);
      # methods written in C have no instruction sequence.
      def block_methods(mod)
        return [] unless defined?(RubyVM::InstructionSequence)

        found = []
        singleton = core(Kernel, :singleton_class, mod)
        core(Module, :instance_methods, singleton, false).each do |name|
          found << [".#{name}", mod] if block_method?(core(Module, :instance_method, singleton, name))
        end
        if Class === mod
          names = core(Module, :instance_methods, mod) + core(Module, :private_instance_methods, mod)
          names.each do |name|
            method = core(Module, :instance_method, mod, name)
            found << ["##{name}", method.owner] if block_method?(method)
          end
        end
        found
      end

      def block_method?(method)
        iseq = RubyVM::InstructionSequence.of(method)
        iseq ? iseq.label.start_with?("block ") : false
      rescue StandardError
        false
      end

      # Walks the unshareable +obj+ found at +path+. +edge+ says how its
      # parent refers to it ("holds", "captures `x` =") or is nil. Puts the
      # object's own finding before those of what it refers to. Returns
      # false when nothing here explains +obj+ (seen before, or cut off).
      def visit(obj, path, edge)
        return false if @seen.key?(obj) || spent? || @depth >= MAX_DEPTH

        @seen[obj] = true
        mark = @findings.size
        counted = @count
        complete = walk_children(obj, path)
        found = @count > counted
        reason = reason(obj, found, complete)
        return found || complete unless reason || (edge && found) # else explained elsewhere, or cut off

        @count += 1
        return true if mark >= MAX_FINDINGS # counted, not described

        message = if edge
                    reason ? "#{edge} #{brief(obj)}, which #{reason}" : "#{edge} #{brief(obj)} (unshareable)"
                  else
                    "#{subject(obj)} #{reason}"
                  end
        @findings.insert(mark, Finding.new(path: path, message: message))
        true
      end

      # Visits each unshareable child; false when one was not walked here.
      def walk_children(obj, path)
        complete = true
        @depth += 1
        each_child(obj, path) do |value, child_path, edge|
          complete = false unless visit(value, child_path, edge)
          break if spent?
        end
        complete
      ensure
        @depth -= 1
      end

      # Why +obj+ itself is unshareable, or nil when its children explain it.
      def reason(obj, found, complete)
        if Proc === obj
          found ? nil : "was not made shareable — build it with Kino.shareable_app or Ractor.make_shareable"
        elsif NATIVE.any? { |type| type === obj } then NATIVE_REASON
        elsif !core(Kernel, :frozen?, obj) then "is not frozen"
        elsif !found && complete then "cannot cross ractors even frozen (it holds native or hidden state)"
        end
      end

      # Yields [value, path, edge] for each unshareable object +obj+ refers to.
      def each_child(obj, path, &block)
        return proc_children(obj, path, &block) if Proc === obj

        case obj
        when Hash then hash_children(obj, path, &block)
        when Array
          index = -1
          core(Array, :each, obj) { |value| index += 1; child(value, "#{path}[#{index}]", &block) }
        when Struct then core(Struct, :each_pair, obj) { |name, value| child(value, "#{path}.#{name}", "holds", &block) }
        when DATA_CLASS then # nil before Ruby 3.2: never matches
          core(DATA_CLASS, :to_h, obj).each_pair { |name, value| child(value, "#{path}.#{name}", "holds", &block) }
        when Range then %i[begin end].each { |m| child(core(Range, m, obj), "#{path}.#{m}", "holds", &block) }
        end
        if defined?(::Set) && ::Set === obj # core in Ruby 4.0; before, its ivars are internals
          return core(::Set, :each, obj) do |value|
            child(value, "#{path} element #{label(value)}", &block) unless Ractor.shareable?(value)
          end
        end

        core(Kernel, :instance_variables, obj).each do |name|
          child(core(Kernel, :instance_variable_get, obj, name), "#{path}.#{name}", "holds", &block)
        end
      end

      # Keys (rarely unshareable), values, and the default value or proc.
      def hash_children(hash, path, &block)
        core(Hash, :each_pair, hash) do |key, value|
          next if Ractor.shareable?(key) && Ractor.shareable?(value) # skip inspecting the key

          child(key, "#{path} key #{label(key)}", &block)
          child(value, "#{path}[#{label(key)}]", &block)
        end
        default = core(Hash, :default_proc, hash) || core(Hash, :default, hash)
        child(default, "#{path}.default", "default is", &block)
      end

      # A proc's own finding (an unshareable self) and its captured locals
      # as children. Procs from C have no binding: nothing to show.
      def proc_children(prc, path, &block)
        at = "#{path} (Proc at #{site(prc)})"
        scope = proc_binding(prc) or return
        unless Ractor.shareable?(scope.receiver)
          add(at, "self is not shareable: #{brief(scope.receiver)} — build the proc with Kino.shareable_app " \
                  "or Ractor.shareable_proc (Ruby 4.0), or define the app as a module with self.call")
        end
        used = referenced_locals(prc)
        scope.local_variables.each do |name|
          next if used && !used.include?(name)

          child(scope.local_variable_get(name), "#{at} capture `#{name}`", "captures `#{name}` =", &block)
        end
      end

      # The locals the proc's code reads or writes, from its bytecode where
      # RubyVM::InstructionSequence exists (CRuby), so locals it never
      # touches (a config.ru loader's, say) are not reported. nil, meaning
      # every visible local counts, elsewhere or when the proc may eval.
      def referenced_locals(prc)
        return nil unless defined?(RubyVM::InstructionSequence)

        code = RubyVM::InstructionSequence.of(prc)&.disasm
        return nil if code.nil? || code.match?(/mid:(?:binding|eval|\w+_eval|local_variable_\w+)\b/)

        code.scan(/\b(?:get|set)(?:local|blockparam)\w*\s+([^\s@,]+)@/).flatten.map(&:to_sym)
      rescue StandardError
        nil
      end

      # Proc#binding, or nil for procs from C and isolated procs.
      def proc_binding(prc)
        core(Proc, :binding, prc)
      rescue ArgumentError
        nil
      end

      # "file:line" of a proc, relative to the working directory when under
      # it; "native" without one. (Ruby 4.0 appends columns: ignored.)
      def site(prc)
        file, line = core(Proc, :source_location, prc)
        return "native" unless file

        "#{file.delete_prefix("#{Dir.pwd}/")}:#{line}"
      end

      # Yields the child unless it is shareable (then nothing about it can block).
      def child(value, path, edge = nil)
        yield value, path, edge unless Ractor.shareable?(value)
      end

      # Records a finding (described while there is room).
      def add(path, message)
        @count += 1
        @findings << Finding.new(path: path, message: message) if @findings.size < MAX_FINDINGS
      end

      # True once the walk must stop: MAX_NODES objects walked.
      def spent? = cut?

      # "Foo instance" for plain objects with state, else the brief.
      def subject(obj)
        plain = !(Hash === obj || Array === obj || Struct === obj)
        plain && !core(Kernel, :instance_variables, obj).empty? ? "#{class_name(obj)} instance" : brief(obj)
      end

      # obj.inspect cut to BRIEF characters, then the class: '"abc" (String)';
      # "#<ClassName>" when inspect fails.
      def brief(obj)
        text = inspected(obj)
        text ? "#{text} (#{class_name(obj)})" : "#<#{class_name(obj)}>"
      end

      # How a hash key or set element appears in a path.
      def label(obj)
        inspected(obj) || "#<#{class_name(obj)}>"
      end

      # obj.inspect (Kernel's for a BasicObject) cut to BRIEF characters, or
      # nil when it raises or returns no String.
      def inspected(obj)
        text = Kernel === obj ? obj.inspect : core(Kernel, :inspect, obj)
        return nil unless String === text

        text.length > BRIEF ? "#{text[0, BRIEF]}..." : text
      rescue StandardError, SystemStackError
        nil
      end

      # The real class name ("#<Class:0x...>" when anonymous).
      def class_name(obj)
        klass = core(Kernel, :class, obj)
        core(Module, :name, klass) || core(Module, :inspect, klass)
      end

      # Calls +owner+'s own method +name+ on +obj+, whatever obj overrides.
      def core(owner, name, obj, *args, &block) = owner.instance_method(name).bind_call(obj, *args, &block)
    end
    private_constant :Walk
  end
end
